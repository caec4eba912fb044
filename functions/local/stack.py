"""Composition root of local mode: every layer wired with its local adapter.

``flux dev``, ``flux invoke`` (without a running server) and the e2e tests build
a :class:`LocalStack`; AWS builds the same layers with AWS adapters in each
Lambda's entry point. State lives under ``<project>/.flux/``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from functions.local.gateway import LocalGateway
from functions.observability.buffered import BufferedSink
from functions.observability.sqlite_store import SqliteSpanStore
from functions.runtime.host import Runtime, RuntimeOptions, Services
from functions.runtime.http import HttpPipeline
from functions.runtime.local_secrets import SqliteSecretsStore
from functions.shared.manifest import Project, load_project
from functions.shared.spans import NullSink, SafeSink, SpanSink

_log = logging.getLogger("flux.local")


@dataclass(frozen=True)
class StatePaths:
    root: Path

    @classmethod
    def of(cls, project_root: Path) -> StatePaths:
        return cls(project_root / ".flux")

    @property
    def traces(self) -> Path:
        return self.root / "traces.db"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets.db"

    @property
    def keys(self) -> Path:
        return self.root / "keys.db"

    @property
    def queue(self) -> Path:
        return self.root / "queue.db"

    @property
    def postgres(self) -> Path:
        return self.root / "pg"

    @property
    def dev_file(self) -> Path:
        return self.root / "dev.json"


class LocalStack:
    def __init__(self, project_root: str | Path, *, tracing: bool | None = None, min_warm: int = 1,
                 max_workers: int = 4, on_request: Callable[[dict[str, Any]], None] | None = None,
                 use_database: bool = True) -> None:
        self.project: Project = load_project(project_root)
        self.paths = StatePaths.of(self.project.root)
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self.store = SqliteSpanStore(self.paths.traces)
        enabled = self.project.config.observability.tracing if tracing is None else tracing
        self._buffer = BufferedSink(self.store) if enabled else None
        self.sink: SpanSink = SafeSink(self._buffer) if self._buffer is not None else NullSink()
        self.secrets = SqliteSecretsStore(self.paths.secrets)
        self.services = Services(secrets=self.secrets)
        self.runtime = Runtime(self.project, sink=self.sink, services=self.services,
                               options=RuntimeOptions(state_dir=self.paths.root, min_warm=min_warm,
                                                      max_workers=max_workers))
        self.pipeline = HttpPipeline(self.project, self.runtime, sink=self.sink, on_complete=on_request)
        self.gateway = LocalGateway(self.project, self.pipeline, authorize=self._authorizer(self.project))
        self.use_database = use_database

    def _authorizer(self, project: Project) -> Callable[[dict[str, Any]], dict[str, Any]]:
        from functions.gateway.local import build_local_authorizer

        return build_local_authorizer(project, secrets=self.secrets).authorize

    async def start(self) -> None:
        await self.runtime.start()

    async def reload(self) -> Project:
        """Re-read flux.json files and restart workers; on invalid files keep the running version."""
        project = load_project(self.project.root)
        authorize = self._authorizer(project)
        self.project = project
        self.gateway.set_project(project)
        self.gateway.authorize = authorize
        await self.runtime.reload(project)
        return project

    async def stop(self) -> None:
        await self.runtime.close()
        self.sink.flush()
        self.sink.close()

    def flush(self) -> None:
        self.sink.flush()
