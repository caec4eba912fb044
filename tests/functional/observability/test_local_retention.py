"""`flux dev` keeps `observability.retention_days` of traces and logs in `.flux/traces.db`."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from functions.local.stack import LocalStack
from functions.observability.sqlite_store import SqliteSpanStore
from functions.shared.spans import LogRecord, Span

OLD = "0" * 31 + "1"
NEW = "0" * 31 + "2"
DAY_US = 86_400 * 1_000_000


def _project(root: Path, retention_days: int) -> Path:
    (root / "functions" / "hello").mkdir(parents=True, exist_ok=True)
    (root / "functions" / "hello" / "index.ts").write_text("export default () => ({});\n")
    (root / "functions" / "hello" / "flux.json").write_text(json.dumps({"route": "/hello", "method": "GET"}))
    (root / "flux.json").write_text(json.dumps({"name": "shop", "observability": {"retention_days": retention_days}}))
    return root


def _request(trace: str, start_us: int) -> Span:
    return Span(trace, "a" * 16, None, "gateway", "GET /hello", start_us, 100, "ok", {"function": "hello"})


def test_the_dev_stack_deletes_what_flux_json_no_longer_keeps(tmp_path: Path) -> None:
    root = _project(tmp_path / "shop", retention_days=3)
    now_us = int(time.time() * 1_000_000)
    seeded = SqliteSpanStore(root / ".flux" / "traces.db")
    seeded.write_spans([_request(OLD, now_us - 4 * DAY_US)])
    seeded.write_logs([LogRecord(OLD, None, now_us - 4 * DAY_US, "info", "hello", "old", {})])
    seeded.close()

    stack = LocalStack(root, use_database=False)
    try:
        stack.sink.write_spans([_request(NEW, now_us)])
        stack.flush()
        assert stack.store.get_trace(OLD) == []
        assert stack.store.list_logs(request_id=OLD) == []
        assert stack.store.get_trace(NEW)

        _project(root, retention_days=1)
        stack.store.write_spans([_request(OLD, now_us - 2 * DAY_US)])  # kept under 3 days
        assert stack.store.get_trace(OLD)
        asyncio.run(stack.reload())
        stack.sink.write_spans([_request(NEW, now_us)])
        stack.flush()
        assert stack.store.get_trace(OLD) == [], "the reloaded flux.json's retention is not applied"
    finally:
        asyncio.run(stack.stop())
