"""The engine Lambda end to end: DSN from a (moto) Secrets Manager secret, then migrate, graph and advice."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import psycopg
import pytest
from moto import mock_aws

from functions.aws.entry_engine import make_handler

pytestmark = pytest.mark.integration

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)


def test_the_engine_lambda_serves_migrate_schema_graph_and_suggest(pg_dsn: str, aws_env: None) -> None:
    url = urlsplit(pg_dsn)
    with mock_aws():
        secret = boto3.client("secretsmanager").create_secret(Name="flux/db", SecretString=json.dumps({
            "host": url.hostname, "port": url.port, "username": url.username, "password": url.password or "",
            "dbname": url.path.lstrip("/")}))
        handler = make_handler(env={"DATABASE_SECRET_ARN": secret["ARN"], "DATABASE_SSLMODE": "disable",
                                    "FLUX_SCHEMA_DIR": str(SHOP / "schema"), "SLOW_QUERY_MS": "50"})
        migrated = handler({"action": "migrate"}, None)
        assert migrated["ok"], migrated
        assert migrated["result"]["applied"][:3] == ["001_catalog.sql", "002_orders.sql", "003_seed.sql"]
        assert handler({"action": "migrate"}, None)["result"]["applied"] == []

        graph = handler({"action": "schema_graph"}, None)
        assert {"orders", "order_items"} <= {t["name"] for t in graph["result"]["tables"]}

        slow_span = {"trace_id": "a" * 32, "span_id": "b" * 16, "parent_span_id": "c" * 16, "kind": "db",
                     "name": "select orders", "start_us": 1, "duration_us": 80_000, "status": "ok",
                     "attrs": {"table": "orders", "operation": "select", "filter_columns": ["customer_email"],
                               "filter_ops": ["eq"], "order_columns": ["created_at"], "sql_shape": "s"}}
        small = handler({"action": "suggest", "spans": [slow_span]}, None)
        assert small == {"ok": True, "result": []}   # 24 orders: an index would not make the plan cheaper
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute((SHOP / "seed" / "orders_50k.sql").read_text())
        suggested = handler({"action": "suggest", "spans": [slow_span]}, None)
        assert suggested["ok"], suggested
        assert [s["columns"] for s in suggested["result"]] == [["customer_email", "created_at"]]
