"""`flux trace / tail / logs / why` against a project's .flux/traces.db, a running dev server, and env overrides."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from observability_seed import FAILED_TRACE, LIST_TRACES, ORDER_TRACE, order_trace, seed
from typer.testing import CliRunner

from cli.commands import observe
from cli.commands.observe import app
from functions.observability.api import ObservabilityApi
from functions.observability.asgi import asgi_app
from functions.observability.sqlite_store import SqliteSpanStore
from functions.shared.spans import LogRecord, now_us

runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUX_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("FLUX_API_URL", raising=False)
    monkeypatch.delenv("FLUX_API_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    (root / ".flux").mkdir(parents=True)
    (root / "flux.json").write_text(json.dumps({"name": "shop", "observability": {"slow_query_ms": 150}}))
    store = SqliteSpanStore(root / ".flux" / "traces.db")
    seed(store)
    store.close()
    return root


def run(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_trace_renders_tree_waterfall_and_findings(project: Path) -> None:
    result = run("trace", ORDER_TRACE, "--project-dir", str(project))
    assert result.exit_code == 0, result.output
    out = result.output
    for text in ("POST /orders", "OK", "create_order", "└─", "select products [N+1]", "select order_items [slow]",
                 "async → send_invoice", "attempt 1 · waited 58ms · ok", "users select rows=1 MISS", "█",
                 "N+1 6 queries (concurrent) on products", "slow select order_items took 168.0ms",
                 "logs (3)", "invoice sent"):
        assert text in out, text
    lines = out.splitlines()
    assert lines.index(next(line for line in lines if "async → send_invoice" in line)) < \
        lines.index(next(line for line in lines if "update orders" in line))


def test_trace_json_is_the_api_response(project: Path) -> None:
    result = run("trace", ORDER_TRACE, "--json", "--project-dir", str(project))
    assert result.exit_code == 0
    body = json.loads(result.output)
    assert body["trace_id"] == ORDER_TRACE and body["span_count"] == 16
    assert [q["table"] for q in body["slow_queries"]] == ["order_items"]  # flux.json's slow_query_ms = 150 applies


def test_unknown_trace_exits_1_with_a_message(project: Path) -> None:
    result = runner.invoke(app, ["trace", "f" * 32, "--project-dir", str(project)])
    assert result.exit_code == 1 and "no trace ffff" in result.output
    result = runner.invoke(app, ["trace", "nope", "--project-dir", str(project)])
    assert result.exit_code == 1 and "not a request id" in result.output


def test_why_names_file_line_and_writes(project: Path) -> None:
    result = run("why", FAILED_TRACE, "--project-dir", str(project))
    assert result.exit_code == 0, result.output
    for text in ("POST /refunds failed with HTTP 500", "function refund", "function_error",
                 "Cannot read properties of undefined", "functions/refund/index.ts:14", "insert refunds (1 rows)",
                 "next:", "ctx.db.batch"):
        assert text in result.output, text
    ok = run("why", ORDER_TRACE, "--project-dir", str(project))
    assert ok.exit_code == 0 and "no error in this trace" in ok.output
    report = json.loads(run("why", FAILED_TRACE, "--json", "--project-dir", str(project)).output)
    assert report["error"]["line"] == 14 and report["db_writes"][0]["table"] == "refunds"


def test_logs_filters_and_json(project: Path) -> None:
    result = run("logs", "--level", "warn", "--project-dir", str(project))
    assert result.exit_code == 0
    assert "refund without amount" in result.output and "order created" not in result.output
    assert "WARN" in result.output and "ERROR" in result.output
    lines = run("logs", "--request-id", ORDER_TRACE, "--json", "--project-dir", str(project)).output.splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["order created", "queued invoice", "invoice sent"]
    assert run("logs", "--since", "15s", "--project-dir", str(project)).output.strip() == ""
    bad = runner.invoke(app, ["logs", "--since", "last tuesday", "--project-dir", str(project)])
    assert bad.exit_code == 1 and "since" in bad.output


def test_logs_follow_prints_new_lines_once(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    polls = []

    def fake_sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 1:
            store = SqliteSpanStore(project / ".flux" / "traces.db")
            store.write_logs([LogRecord("9" * 32, None, now_us(), "info", "create_order", "a new line", {})])
            store.close()
            return
        raise KeyboardInterrupt

    monkeypatch.setattr(observe.time, "sleep", fake_sleep)
    result = run("logs", "--follow", "--json", "--project-dir", str(project))
    assert result.exit_code == 0
    messages = [json.loads(line)["message"] for line in result.output.splitlines()]
    assert messages.count("a new line") == 1 and messages.count("order created") == 1 and len(messages) == 6


def test_tail_prints_requests_and_stops_cleanly(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run("tail", "--count", "3", "--json", "--project-dir", str(project))
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert result.exit_code == 0 and [t["trace_id"] for t in lines] == LIST_TRACES[:3]
    monkeypatch.setattr(observe.time, "sleep", lambda s: (_ for _ in ()).throw(KeyboardInterrupt))
    human = run("tail", "--project-dir", str(project))
    assert human.exit_code == 0
    assert "POST   /orders" in human.output and "500" in human.output and ORDER_TRACE in human.output


def test_tail_picks_up_requests_that_finish_later(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_sleep(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) > 1:
            raise KeyboardInterrupt
        store = SqliteSpanStore(project / ".flux" / "traces.db")
        spans, _ = order_trace(now_us() - 120_000_000)  # started two minutes ago, written only now
        store.write_spans([s.__class__(**{**s.to_dict(), "trace_id": "7" * 32}) for s in spans])
        store.close()

    monkeypatch.setattr(observe.time, "sleep", fake_sleep)
    result = run("tail", "--json", "--project-dir", str(project))
    ids = [json.loads(line)["trace_id"] for line in result.output.splitlines()]
    assert ids[-1] == "7" * 32 and len(ids) == 7 and len(set(ids)) == 7


def test_running_dev_server_is_preferred_over_the_files(project: Path, tmp_path: Path, serve: Any) -> None:
    served = SqliteSpanStore(tmp_path / "served.db")
    spans, _ = order_trace(now_us())
    served.write_spans(spans)
    with serve(asgi_app(ObservabilityApi(served))) as url:
        (project / ".flux" / "dev.json").write_text(json.dumps({"url": url, "port": 0, "pid": os.getpid()}))
        result = run("tail", "--count", "1", "--json", "--project-dir", str(project))
        assert [json.loads(line)["trace_id"] for line in result.output.splitlines()] == [ORDER_TRACE]
    # The server is gone: the same dev.json no longer answers, so the CLI reads the files.
    result = run("tail", "--count", "1", "--json", "--project-dir", str(project))
    assert json.loads(result.output)["trace_id"] == LIST_TRACES[0]
    (project / ".flux" / "dev.json").write_text(json.dumps({"url": "http://127.0.0.1:9", "port": 9, "pid": 999_999_999}))
    assert json.loads(run("tail", "--count", "1", "--json", "--project-dir", str(project)).output)["trace_id"] \
        == LIST_TRACES[0]
    served.close()


def test_api_url_sources_in_order(project: Path, tmp_path: Path, serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    served = SqliteSpanStore(tmp_path / "served.db")
    spans, _ = order_trace(now_us())
    served.write_spans(spans)
    monkeypatch.chdir(project)
    with serve(asgi_app(ObservabilityApi(served))) as url:
        from_files = run("tail", "--count", "1", "--json")
        assert json.loads(from_files.output)["trace_id"] == LIST_TRACES[0]
        monkeypatch.setenv("FLUX_API_URL", url)
        from_env = run("tail", "--count", "1", "--json")
        assert json.loads(from_env.output)["trace_id"] == ORDER_TRACE
        monkeypatch.setenv("FLUX_API_URL", "http://127.0.0.1:9")
        explicit = run("trace", ORDER_TRACE, "--json", "--api-url", url + "/_flux/api/")
        assert json.loads(explicit.output)["span_count"] == 16
        down = runner.invoke(app, ["tail", "--count", "1"])
        assert down.exit_code == 1 and "cannot reach http://127.0.0.1:9/_flux/api" in down.output
    served.close()


def test_no_project_no_api_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    result = runner.invoke(app, ["trace", ORDER_TRACE])
    assert result.exit_code == 1 and "no Flux API found" in result.output
    (empty / "flux.json").write_text('{"name": "x"}')
    result = runner.invoke(app, ["logs"])
    assert result.exit_code == 1 and "no traces yet" in result.output
