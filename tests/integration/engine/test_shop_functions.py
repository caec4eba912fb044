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


def test_the_order_page_embeds_customer_items_and_products_in_one_statement(shop_harness) -> None:  # type: ignore[no-untyped-def]
    page, spans = invoke(shop_harness, "order_page", {"id": "1"})
    assert len(spans) == 1 and spans[0].attrs["embeds"] == ["customer:users", "items:order_items",
                                                            "items.product:products"]
    assert page["id"] == 1 and page["customer"]["email"] and page["lines"] == len(page["items"]) >= 1
    assert all(set(item) == {"id", "quantity", "unit_price", "product"} for item in page["items"])
    assert all(item["product"]["sku"] and item["product"]["name"] for item in page["items"])
    assert [item["id"] for item in page["items"]] == sorted(item["id"] for item in page["items"])
    # the same lines as get_order's two-query batch, now with product names
    fetched, _ = invoke(shop_harness, "get_order", {"id": "1"})
    assert [i["quantity"] for i in fetched["items"]] == [i["quantity"] for i in page["items"]]
    assert page["units"] == sum(i["quantity"] for i in fetched["items"])
    missing, _ = invoke(shop_harness, "order_page", {"id": "99999999"})
    assert isinstance(missing, FluxError) and str(missing) == "404 not_found: no order 99999999"


def test_the_sales_report_groups_in_the_database(shop_harness) -> None:  # type: ignore[no-untyped-def]
    report, spans = invoke(shop_harness, "sales_report", {"top": "3"})
    assert [s.attrs.get("group_by") for s in spans] == [["status"], None, None]
    assert spans[1].attrs["table"] == "product_sales"
    by_status = {row["status"]: row for row in report["by_status"]}
    assert set(by_status) <= {"pending", "paid", "shipped", "cancelled"} and by_status
    assert sum(row["orders"] for row in report["by_status"]) >= 24
    revenues = [row["revenue"] for row in report["by_status"]]
    assert revenues == sorted(revenues, reverse=True)
    assert len(report["top_products"]) == 3
    units = [p["units"] for p in report["top_products"]]
    assert units == sorted(units, reverse=True) and all(p["sku"] for p in report["top_products"])
    assert 1 <= report["customers"] <= 5


def test_product_search_with_full_text_or_tag_and_a_total(shop_harness) -> None:  # type: ignore[no-untyped-def]
    found, spans = invoke(shop_harness, "search_products", {"q": "wireless"})
    assert [p["sku"] for p in found["products"]] == ["MS-02"] and found["total"] == 1   # a tag of HD-05, not its text
    found, _ = invoke(shop_harness, "search_products", {"q": "cancelling headphones"})
    assert [p["sku"] for p in found["products"]] == ["HD-05"]           # stemmed: "cancelling" matches
    either, spans = invoke(shop_harness, "search_products", {"q": "monitor", "tag": "cables"})
    assert {p["sku"] for p in either["products"]} == {"MN-27", "CB-10", "DK-03"} and either["total"] == 3
    assert spans[0].attrs["filter_any_columns"] == ["search", "tags"] and spans[0].attrs["count"] == "exact"
    paged, _ = invoke(shop_harness, "search_products", {"tag": "desk", "limit": "2"})
    assert paged["total"] == 3 and len(paged["products"]) == 2 and paged["next_offset"] == 2
    rest, _ = invoke(shop_harness, "search_products", {"tag": "desk", "limit": "2", "offset": "2"})
    assert len(rest["products"]) == 1 and rest["next_offset"] is None
    cheap, _ = invoke(shop_harness, "search_products", {"tag": "desk", "max_price": "100"})
    assert [p["sku"] for p in cheap["products"]] == ["KB-01"]
    nothing, _ = invoke(shop_harness, "search_products", {})
    assert isinstance(nothing, FluxError) and str(nothing).startswith("400 validation_failed")


def test_the_n_plus_one_report_now_suggests_the_embed(shop_harness) -> None:  # type: ignore[no-untyped-def]
    _, spans = invoke(shop_harness, "orders_report_slow", {"limit": "20"})
    [warning] = find_n_plus_one(spans, threshold=5)
    assert warning["suggested_query"]["table"] == "orders"
    assert warning["suggested_query"]["embed"] == {"order_items": {"table": "order_items"}}
    assert "in one statement" in warning["suggestion"]
