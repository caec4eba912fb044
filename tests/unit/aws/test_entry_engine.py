"""The engine Lambda's dispatch and DSN resolution, with injected fakes (no database, no AWS)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from functions.engine.errors import EngineError
from functions.engine.handler import dsn_from_environment, make_handler
from functions.engine.migrations import MigrationReport
from functions.shared.errors import DatabaseUnavailable


class FakeAdvice:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.seen: list[Any] = []

    def schema_graph(self) -> dict[str, Any]:
        return {"tables": [{"name": "orders"}], "suggested_indexes": []}

    def suggest_indexes(self, spans: Any) -> list[dict[str, Any]]:
        self.seen.append(spans)
        return [{"table": "orders", "columns": ["status"], "spans": len(spans)}]


class FakeSecrets:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.calls: list[str] = []

    def get_secret_value(self, SecretId: str) -> dict[str, str]:
        self.calls.append(SecretId)
        return {"SecretString": self.secret}


SPAN = {"trace_id": "a" * 32, "span_id": "b" * 16, "parent_span_id": None, "kind": "db", "name": "select orders",
        "start_us": 1, "duration_us": 2, "status": "ok", "attrs": {"table": "orders"}}


def test_actions_dispatch_to_migrations_and_advice(tmp_path: Path) -> None:
    migrated: list[tuple[str, Path]] = []

    def migrate(dsn: str, directory: Path) -> MigrationReport:
        migrated.append((dsn, directory))
        return MigrationReport(applied=["001_a.sql"])

    handler = make_handler(dsn_provider=lambda: "postgresql://db/x", advice_factory=FakeAdvice, migrate=migrate,
                           schema_dir=tmp_path)
    assert handler({"action": "migrate"}, None)["result"]["applied"] == ["001_a.sql"]
    assert migrated == [("postgresql://db/x", tmp_path)]
    graph = handler({"action": "schema_graph", "spans": [SPAN]}, None)
    assert graph["ok"] and graph["result"]["suggested_indexes"] == [{"table": "orders", "columns": ["status"],
                                                                       "spans": 1}]
    assert handler({"action": "suggest", "spans": [SPAN, SPAN]}, None)["result"][0]["spans"] == 2


def test_bad_events_are_validation_errors_not_crashes() -> None:
    handler = make_handler(dsn_provider=lambda: "x", advice_factory=FakeAdvice)
    assert handler({"action": "drop_database"}, None)["error"] == "validation_failed"
    assert handler({"action": "suggest", "spans": "nope"}, None)["status"] == 400
    assert "not a list of spans" in handler({"action": "suggest", "spans": [{"kind": "db"}]}, None)["message"]


def test_database_errors_come_back_with_status_code_and_headers() -> None:
    def down() -> str:
        raise DatabaseUnavailable("database unavailable", headers={"Retry-After": "5"})

    answer = make_handler(dsn_provider=down, advice_factory=FakeAdvice)({"action": "schema_graph"}, None)
    assert answer == {"ok": False, "status": 503, "error": "database_unavailable", "message": "database unavailable",
                      "headers": {"Retry-After": "5"}}


def test_the_dsn_is_resolved_once_per_container() -> None:
    calls = []

    def provider() -> str:
        calls.append(1)
        return "postgresql://db/x"

    handler = make_handler(dsn_provider=provider, advice_factory=FakeAdvice)
    handler({"action": "suggest"}, None)
    handler({"action": "suggest"}, None)
    assert len(calls) == 1


def test_dsn_from_database_url_wins() -> None:
    assert dsn_from_environment({"DATABASE_URL": "postgresql://u@h/db", "DATABASE_SECRET_ARN": "arn"}) == \
        "postgresql://u@h/db"


def test_dsn_from_an_rds_secret() -> None:
    secrets = FakeSecrets(json.dumps({"host": "db.internal", "port": 5432, "username": "flux", "password": "p w'",
                                      "dbname": "app"}))
    dsn = dsn_from_environment({"DATABASE_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:db"},
                               secrets_client=secrets)
    assert secrets.calls == ["arn:aws:secretsmanager:us-east-1:1:secret:db"]
    assert "host=db.internal" in dsn and "user=flux" in dsn and "dbname=app" in dsn and "sslmode=require" in dsn
    assert "password='p w\\''" in dsn


def test_dsn_missing_everywhere_is_a_clear_error() -> None:
    with pytest.raises(EngineError, match="set DATABASE_URL or DATABASE_SECRET_ARN"):
        dsn_from_environment({})
