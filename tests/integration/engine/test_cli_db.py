"""`flux db migrate | schema | suggest` on a project, against the test server via DATABASE_URL."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from cli.commands.db import app
from functions.observability.sqlite_store import SqliteSpanStore
from functions.shared.spans import Span

pytestmark = pytest.mark.integration

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop"
runner = CliRunner()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-project")
    shutil.copytree(SHOP / "schema", root / "schema")
    (root / "flux.json").write_text(json.dumps({"name": "shop", "observability": {"slow_query_ms": 100,
                                                                                  "n_plus_one_threshold": 5}}))
    return root


def flux_db(project: Path, dsn: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "-C", str(project)], env={"DATABASE_URL": dsn})
    return result.exit_code, result.output


def test_migrate_applies_then_reports_nothing_to_do(project: Path, pg_dsn: str) -> None:
    code, output = flux_db(project, pg_dsn, "migrate", "--json")
    assert code == 0, output
    report = json.loads(output)
    assert report["applied"][:3] == ["001_catalog.sql", "002_orders.sql", "003_seed.sql"]
    code, output = flux_db(project, pg_dsn, "migrate")
    assert code == 0 and "0 applied" in output and "already applied" in output


def test_schema_as_json_and_as_tables(project: Path, pg_dsn: str) -> None:
    assert flux_db(project, pg_dsn, "migrate")[0] == 0  # idempotent; tests may run on any xdist worker
    code, output = flux_db(project, pg_dsn, "schema", "--json")
    assert code == 0, output
    graph = json.loads(output)
    assert {t["name"] for t in graph["tables"]} >= {"users", "products", "orders", "order_items"}
    code, output = flux_db(project, pg_dsn, "schema")
    assert code == 0 and "order_items" in output and "→ orders.id" in output and "orders_user_id_idx" in output


def test_suggest_reads_recent_traces_from_the_local_store(project: Path, pg_dsn: str) -> None:
    assert flux_db(project, pg_dsn, "migrate")[0] == 0
    code, output = flux_db(project, pg_dsn, "suggest")
    assert code == 0 and "No traces yet" in output
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute((SHOP / "seed" / "orders_50k.sql").read_text())
    store = SqliteSpanStore(project / ".flux" / "traces.db")
    trace = "c" * 32
    spans = [Span(trace, "g" * 16, None, "gateway", "GET /orders", 0, 900_000, "ok", {"function": "list_orders"}),
             Span(trace, "f" * 16, "g" * 16, "function", "list_orders", 1, 800_000, "ok", {"function": "list_orders"})]
    spans += [Span(trace, f"{i:016x}", "f" * 16, "db", "select orders", 10 + i, 150_000, "ok", {
        "function": "list_orders", "table": "orders", "operation": "select", "filter_columns": ["customer_email"],
        "filter_ops": ["eq"], "order_columns": [], "sql_shape": 'SELECT * FROM "orders" WHERE "customer_email" = ? '
                                                                'LIMIT ?'}) for i in range(2)]
    store.write_spans(spans)
    store.close()

    code, output = flux_db(project, pg_dsn, "suggest", "--json")
    assert code == 0, output
    [suggestion] = json.loads(output)
    assert suggestion["columns"] == ["customer_email"] and "took 150.0 ms" in suggestion["reason"]
    code, output = flux_db(project, pg_dsn, "suggest")
    assert code == 0 and 'CREATE INDEX IF NOT EXISTS "orders_customer_email_idx"' in output


def test_an_unreachable_database_exits_non_zero_with_the_error(project: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, output = flux_db(project, f"postgresql://postgres@127.0.0.1:{port}/x?connect_timeout=2", "schema",
                           "--json")
    assert code == 1 and json.loads(output)["error"] == "database_unavailable"
