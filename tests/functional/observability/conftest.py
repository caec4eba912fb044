"""Fixtures shared by the observability functional tests: both span store adapters and seeded traces."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
import uvicorn
from moto import mock_aws

from functions.observability.dynamo_schema import create_spans_table
from functions.observability.dynamo_store import DynamoSpanStore
from functions.observability.sqlite_store import SqliteSpanStore
from functions.observability.store import SpanStore

# Test modules here import the shared seed data as `observability_seed` (pytest runs with
# --import-mode=importlib, which does not put test folders on sys.path).
sys.path.insert(0, str(Path(__file__).parent))




@pytest.fixture
def dynamo_client(aws_env: None) -> Iterator[object]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_spans_table(client, "flux-spans")
        yield client


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SpanStore]:
    if request.param == "sqlite":
        sqlite = SqliteSpanStore(tmp_path / ".flux" / "traces.db")
        yield sqlite
        sqlite.close()
        return
    client = request.getfixturevalue("dynamo_client")
    yield DynamoSpanStore(client, "flux-spans", shards=4)


@contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on a free loopback port in a thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def serve() -> Any:
    return serve_asgi
