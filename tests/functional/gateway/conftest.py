"""Fixtures for the gateway functional tests: both store adapters (SQLite, DynamoDB under moto) and projects."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from functions.gateway.dynamo_schema import KEYS_TABLE, RATE_LIMIT_TABLE, create_table
from functions.shared.secrets import MemorySecretsStore as MemorySecrets

EVENTS = Path(__file__).resolve().parents[2] / "events"

PROJECT = {"name": "shop", "auth": {"default": "none", "jwt": {"secret_name": "JWT_SECRET", "algorithms": ["HS256"],
                                                              "issuer": "https://issuer.example"}},
           "cors": {"origins": ["https://app.example.com"]}}
FUNCTIONS = {
    "create_order": {"route": "/orders", "method": "POST", "auth": "api_key",
                     "rate_limit": {"requests": 20, "per_seconds": 60}},
    "get_order": {"route": "/orders/{id}", "method": "GET", "auth": "jwt"},
    "health": {"route": "/health", "method": "GET", "rate_limit": {"requests": 2, "per_seconds": 10}},
}


def write_project(root: Path, project: dict[str, Any] | None = None,
                  functions: dict[str, dict[str, Any]] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "flux.json").write_text(json.dumps(project or PROJECT))
    for name, config in (functions or FUNCTIONS).items():
        folder = root / "functions" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "index.ts").write_text("export default async function handler() { return {}; }\n")
        (folder / "flux.json").write_text(json.dumps(config))
    return root




class FixedClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    return write_project(tmp_path / "shop")


@pytest.fixture
def event() -> Any:
    def load(name: str) -> dict[str, Any]:
        return json.loads((EVENTS / name).read_text())

    return load




@pytest.fixture
def dynamodb(aws_env: None) -> Iterator[Any]:
    """A moto DynamoDB with the gateway's two tables: ``flux-keys`` and ``flux-ratelimit``."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "flux-keys", KEYS_TABLE)
        create_table(client, "flux-ratelimit", RATE_LIMIT_TABLE)
        yield client


@pytest.fixture
def linearizable_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto's item writes atomic, as DynamoDB's are.

    moto checks a ConditionExpression and then stores the item in two Python
    steps with no lock, so under many threads two conditional puts can both
    pass. Real DynamoDB evaluates the condition and writes atomically per
    item; serialising moto's backend calls models exactly that, and nothing
    about our adapter.
    """
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    for name in ("get_item", "put_item", "update_item", "transact_write_items"):
        original = getattr(DynamoDBBackend, name)

        def locked(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return __original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, locked)


@pytest.fixture
def helpers() -> Any:
    class _Helpers:
        MemorySecrets = MemorySecrets
        FixedClock = FixedClock
        write_project = staticmethod(write_project)

    return _Helpers
