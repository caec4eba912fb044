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


def test_migrate_sets_up_the_application_role_the_runtime_then_connects_as(pg_dsn: str, aws_env: None) -> None:
    """A database.url stack: the engine reads the owner's URL and the application secret, creates the role with
    that password and publishes the address; the runtime, given only the application secret, logs in as the role."""
    from functions.aws.database import dsn_from_environment

    with mock_aws():
        client = boto3.client("secretsmanager")
        owner = client.create_secret(Name="flux/db-url", SecretString=json.dumps({"url": pg_dsn}))["ARN"]
        app = client.create_secret(Name="flux/db-app", SecretString=json.dumps(
            {"username": "flux_app_lambda", "password": "lambda-app-password-0123456789"}))["ARN"]
        runtime_env = {"DATABASE_SECRET_ARN": app, "DATABASE_SSLMODE": "disable", "FLUX_STAGE": "dev"}
        with pytest.raises(Exception, match="run `flux db migrate --stage dev`"):
            dsn_from_environment(runtime_env)    # deployed, not migrated yet: no address in the app secret
        handler = make_handler(env={"DATABASE_SECRET_ARN": owner, "DATABASE_APP_SECRET_ARN": app,
                                    "FLUX_SCHEMA_DIR": str(SHOP / "schema")})
        migrated = handler({"action": "migrate"}, None)
        assert migrated["ok"], migrated
        assert migrated["result"]["app_role"] == "flux_app_lambda"
        published = json.loads(client.get_secret_value(SecretId=app)["SecretString"])
        assert published["host"] == urlsplit(pg_dsn).hostname and published["dbname"] == urlsplit(pg_dsn).path[1:]
        assert urlsplit(pg_dsn).password not in json.dumps(published)   # never the owner's credentials
        with psycopg.connect(dsn_from_environment(runtime_env), autocommit=True) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("flux_app_lambda",)
            assert conn.execute("SELECT count(*) > 0 FROM orders").fetchone() == (True,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DROP TABLE orders")
