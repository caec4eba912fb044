"""examples/shop's functions run in Deno against the real engine; their spans feed the detectors.

The runtime is not involved: a small harness gives the handler a ctx whose ``db`` calls come
back to this process as JSON lines and go to ``DataEngine``, concurrently, as the runtime
would send them. That is enough to prove the examples' queries are valid and that the N+1
report is flagged in both its sequential and its concurrent form while its batched twin is not.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from functions.engine.detectors import find_n_plus_one
from functions.engine.migrations import apply_migrations
from functions.shared.context import CallContext
from functions.shared.errors import FluxError
from functions.shared.ids import new_span_id
from functions.shared.spans import MemorySink, Span

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop"
HARNESS = Path(__file__).resolve().parent / "shop_harness.ts"
DENO = shutil.which("deno", path=str(Path(__file__).resolve().parents[3] / ".venv" / "bin")) or shutil.which("deno")


def invoke(harness: Any, function: str, payload: dict[str, Any]) -> tuple[Any, list[Span]]:
    """Run one handler; return (result or FluxError, the db spans it produced)."""
    sink = MemorySink()
    call = CallContext(trace_id="5" * 32, parent_span_id=new_span_id(), function=function, sink=sink)
    entry = SHOP / "functions" / function / "index.ts"

    async def run() -> Any:
        proc = await asyncio.create_subprocess_exec(
            str(DENO), "run", "--no-prompt", "--no-config", f"--allow-read={SHOP},{HARNESS.parent}", str(HARNESS),
            str(entry), json.dumps(payload), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"), "NO_COLOR": "1"})
        assert proc.stdin is not None and proc.stdout is not None
        tasks: set[asyncio.Task[None]] = set()

        async def answer(message: dict[str, Any]) -> None:
            engine = harness.engine
            try:
                if message["method"] == "query":
                    result: Any = await engine.query(message["params"], call)
                else:
                    result = await engine.batch(message["params"], call)
                reply: dict[str, Any] = {"id": message["id"], "result": result}
            except FluxError as exc:
                reply = {"id": message["id"], "error": {"status": exc.status, "code": exc.code,
                                                        "message": exc.message}}
            proc.stdin.write((json.dumps(reply) + "\n").encode())  # type: ignore[union-attr]

        try:
            while True:
                line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
                if not line:
                    raise AssertionError("the harness exited without an answer")
                message = json.loads(line)
                if "done" in message:
                    return message["done"]
                if "failed" in message:
                    failed = message["failed"]
                    return FluxError(f"{failed['status']} {failed['code']}: {failed['message']}")
                task = asyncio.ensure_future(answer(message))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()

    result = harness.run(run())
    return result, [s for s in sink.spans if s.kind == "db"]


pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(DENO is None, reason="deno is not installed")]


@pytest.fixture(scope="module")
def shop_harness(pg_dsn: str, engine_harness_class):  # type: ignore[no-untyped-def]
    report = apply_migrations(pg_dsn, SHOP / "schema")
    assert report.applied[:3] == ["001_catalog.sql", "002_orders.sql", "003_seed.sql"]
    harness = engine_harness_class(pg_dsn, pool_max=10)
    harness.run(harness.engine.refresh_schema())
    yield harness
    harness.close()


def test_the_sequential_report_is_flagged_as_n_plus_one(shop_harness) -> None:  # type: ignore[no-untyped-def]
    result, spans = invoke(shop_harness, "orders_report_slow", {"limit": "20"})
    assert len(result["orders"]) == 20 and len(spans) == 21
    [warning] = find_n_plus_one(spans, threshold=5)
    assert warning["table"] == "order_items" and warning["count"] == 20 and warning["concurrent"] is False
    assert 'column: "order_id", op: "in", value: orderIds' in warning["suggestion"]


def test_the_concurrent_report_is_flagged_too(shop_harness) -> None:  # type: ignore[no-untyped-def]
    result, spans = invoke(shop_harness, "orders_report_concurrent", {"limit": "20"})
    assert len(result["orders"]) == 20
    [warning] = find_n_plus_one(spans, threshold=5)
    assert warning["count"] == 20 and warning["concurrent"] is True


def test_the_batched_twin_is_not_flagged_and_gives_the_same_report(shop_harness) -> None:  # type: ignore[no-untyped-def]
    batched, spans = invoke(shop_harness, "orders_report_batched", {"limit": "20"})
    slow, _ = invoke(shop_harness, "orders_report_slow", {"limit": "20"})
    assert len(spans) == 2 and find_n_plus_one(spans, threshold=5) == []
    assert batched == slow
    assert sum(o["lines"] for o in batched["orders"]) > 20


def test_create_then_list_then_get_an_order(shop_harness) -> None:  # type: ignore[no-untyped-def]
    created, spans = invoke(shop_harness, "create_order",
                            {"user_id": 2, "items": [{"product_id": 1, "quantity": 2}, {"product_id": 5, "quantity": 3}]})
    assert created["customer_email"] == "grace@example.com" and created["status"] == "pending"
    assert created["total"] == 89.0 * 2 + 9.99 * 3 and len(created["items"]) == 2
    assert [s.name for s in spans] == ["select users", "select products", "insert orders", "insert order_items"]

    listed, spans = invoke(shop_harness, "list_orders", {"customer_email": "grace@example.com", "status": "pending",
                                                         "limit": "5"})
    assert listed["orders"][0]["id"] == created["id"]
    assert spans[0].attrs["filter_columns"] == ["status", "customer_email"]

    fetched, spans = invoke(shop_harness, "get_order", {"id": str(created["id"])})
    assert fetched["id"] == created["id"] and [i["quantity"] for i in fetched["items"]] == [2, 3]
    assert all(s.attrs.get("batch") for s in spans)


def test_missing_rows_and_bad_input_are_the_functions_own_errors(shop_harness) -> None:  # type: ignore[no-untyped-def]
    missing, _ = invoke(shop_harness, "get_order", {"id": "99999999"})
    assert isinstance(missing, FluxError) and str(missing) == "404 not_found: no order 99999999"
    unknown, _ = invoke(shop_harness, "create_order", {"user_id": 1, "items": [{"product_id": 424242, "quantity": 1}]})
    assert isinstance(unknown, FluxError) and str(unknown).startswith("404 not_found: no product 424242")
    bad, _ = invoke(shop_harness, "get_order", {"id": "1; drop table orders"})
    assert isinstance(bad, FluxError) and str(bad).startswith("400 validation_failed")
