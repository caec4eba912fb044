"""`flux db migrate | schema | suggest` on a project, against the test server via DATABASE_URL."""

from __future__ import annotations

import json
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


def test_schema_shows_descending_index_keys(project: Path, pg_dsn: str) -> None:
    assert flux_db(project, pg_dsn, "migrate")[0] == 0
    code, output = flux_db(project, pg_dsn, "schema")
    assert code == 0 and "order_items_product_id_idx (product_id, id DESC)" in output, output
    title = " ".join(output[output.find("product_sales"):].split("┏", 1)[0].split())   # titles wrap at 80 columns
    assert title == "product_sales (view over order_items, orders, products)", title
    code, output = flux_db(project, pg_dsn, "schema", "--json")
    [index] = [ix for t in json.loads(output)["tables"] for ix in t["indexes"]
               if ix["name"] == "order_items_product_id_idx"]
    assert index["descending"] == [False, True] and index["definition"].endswith("(product_id, id DESC)")


@pytest.fixture
def fake_api() -> Iterator[tuple[str, list[str]]]:
    """A stand-in observability API on 127.0.0.1 answering /schema/graph and /suggestions; records the paths."""
    seen: list[str] = []
    graph = {"tables": [{"name": "remote_table", "kind": "table", "row_estimate": 3, "primary_key": ["id"],
                         "base_tables": [], "foreign_keys": [], "indexes": [],
                         "columns": [{"name": "id", "type": "integer", "nullable": False, "has_default": True}]}],
             "suggested_indexes": []}
    suggestions = {"traces_scanned": 4, "n1_warnings": [], "slow_queries": [], "advice_error": None,
                   "suggested_indexes": [{"table": "remote_table", "columns": ["id"], "ddl": "CREATE INDEX r;",
                                          "reason": "remote", "est_cost_before": 9.0, "est_cost_after": 1.0}]}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = graph if self.path.startswith("/_flux/api/schema/graph") else suggestions
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_schema_and_suggest_follow_flux_api_url_outside_a_project(fake_api: tuple[str, list[str]], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    url, seen = fake_api
    monkeypatch.chdir(tmp_path)
    env = {"FLUX_API_URL": url, "FLUX_CONFIG_DIR": str(tmp_path / "config"), "DATABASE_URL": None}
    result = runner.invoke(app, ["schema", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert [t["name"] for t in json.loads(result.output)["tables"]] == ["remote_table"]
    result = runner.invoke(app, ["suggest"], env=env)
    assert result.exit_code == 0 and "CREATE INDEX r;" in result.output and "No traces yet" not in result.output
    result = runner.invoke(app, ["schema", "--api-url", url + "/_flux/api"], env={**env, "FLUX_API_URL": None})
    assert result.exit_code == 0 and "remote_table" in result.output
    assert seen[0].startswith("/_flux/api/schema/graph") and seen[1].startswith("/_flux/api/suggestions")
    assert not (tmp_path / ".flux").exists()   # nothing was started or created in the empty directory


def test_outside_a_project_without_an_api_they_say_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"FLUX_API_URL": None, "FLUX_CONFIG_DIR": str(tmp_path / "config"), "DATABASE_URL": None}
    for command in ("schema", "suggest"):
        result = runner.invoke(app, [command], env=env)
        assert result.exit_code == 1 and "no Flux project here" in result.output, result.output
    assert not (tmp_path / ".flux").exists()
