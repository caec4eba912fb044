"""The engine Lambda's dispatch and DSN resolution, with injected fakes (no database, no AWS)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from functions.aws.database import dsn_from_environment
from functions.aws.entry_engine import make_handler
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


def test_dsn_missing_everywhere_is_a_clear_503() -> None:
    with pytest.raises(DatabaseUnavailable, match=r"no database is configured \(DATABASE_URL or DATABASE_SECRET_ARN"):
        dsn_from_environment({})


def test_dsn_from_a_url_secret_as_the_stack_stores_database_url() -> None:
    # infra/constructs/database.py stores {"url": ...} for database.url mode (and users may for secret_arn).
    secrets = FakeSecrets(json.dumps({"url": "postgresql://app:pw@db.example.com:5432/shop"}))
    assert dsn_from_environment({"DATABASE_SECRET_ARN": "arn"}, secrets_client=secrets) == \
        "postgresql://app:pw@db.example.com:5432/shop"
    assert dsn_from_environment({"DATABASE_SECRET_ARN": "arn"},
                                secrets_client=FakeSecrets(" postgres://u@h/db\n")) == "postgres://u@h/db"


def test_the_proxy_host_replaces_the_cluster_host_of_an_rds_secret() -> None:
    secrets = FakeSecrets(json.dumps({"host": "cluster.internal", "username": "flux_admin", "password": "p"}))
    dsn = dsn_from_environment({"DATABASE_SECRET_ARN": "arn", "DATABASE_HOST": "proxy.internal"},
                               secrets_client=secrets)
    assert "host=proxy.internal" in dsn and "cluster.internal" not in dsn and "dbname=postgres" in dsn


@pytest.mark.parametrize(("secret", "message"), [
    ("not json", "neither a URL nor a JSON object"),
    ("[1, 2]", "not a JSON object"),
    (json.dumps({"url": 7, "password": "p"}), "no host, username"),
    (json.dumps({"host": "h", "username": "u"}), "no password"),
])
def test_a_malformed_secret_is_a_503_that_never_echoes_it(secret: str, message: str) -> None:
    with pytest.raises(DatabaseUnavailable, match=message) as caught:
        dsn_from_environment({"DATABASE_SECRET_ARN": "arn"}, secrets_client=FakeSecrets(secret))
    assert caught.value.headers == {"Retry-After": "5"}
    assert '"p"' not in caught.value.message


def test_an_unreadable_secret_is_a_503_naming_only_the_error_code() -> None:
    from botocore.exceptions import ClientError

    class Denied:
        def get_secret_value(self, SecretId: str) -> dict[str, str]:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": f"no access to {SecretId}"}},
                              "GetSecretValue")

    with pytest.raises(DatabaseUnavailable, match=r"cannot read the database secret \(AccessDeniedException\)") as c:
        dsn_from_environment({"DATABASE_SECRET_ARN": "arn:secret:db"}, secrets_client=Denied())
    assert "arn:secret:db" not in c.value.message
