"""An engine on a migrated test database, driven from synchronous tests through its own event loop."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from functions.engine.migrations import apply_migrations
from functions.engine.service import DataEngine
from functions.shared.context import CallContext
from functions.shared.spans import MemorySink

SCHEMA_DIR = Path(__file__).parent / "schema"
T = TypeVar("T")


class EngineHarness:
    """One event loop and one DataEngine (one pool) for a whole test module."""

    def __init__(self, dsn: str, **settings: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.engine = DataEngine.create(dsn, **settings)
        self.sink = MemorySink()
        self.run(self.engine.open())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def call(self, function: str = "test_fn", parent: str = "f" * 16) -> CallContext:
        return CallContext(trace_id="e" * 32, parent_span_id=parent, function=function, sink=self.sink)

    def query(self, raw: Any) -> dict[str, Any]:
        return self.run(self.engine.query(raw, self.call()))

    def rows(self, raw: Any) -> list[dict[str, Any]]:
        return self.query(raw)["rows"]

    def close(self) -> None:
        self.run(self.engine.close())
        self.loop.close()


@pytest.fixture
def pg_home() -> Iterator[Path]:
    """A scratch directory for embedded servers (any directory works, a private 0700 one included)."""
    path = Path(tempfile.mkdtemp(prefix="flux-t-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def engine_harness_class() -> type[EngineHarness]:
    """For modules that build their own harness (conftest classes cannot be imported by name)."""
    return EngineHarness


@pytest.fixture(scope="module")
def migrated_dsn(pg_dsn: str) -> str:
    apply_migrations(pg_dsn, SCHEMA_DIR)
    return pg_dsn


@pytest.fixture(scope="module")
def harness(migrated_dsn: str) -> Iterator[EngineHarness]:
    h = EngineHarness(migrated_dsn, statement_timeout_ms=300, connect_timeout_s=3.0)
    h.run(h.engine.refresh_schema())
    yield h
    h.close()
