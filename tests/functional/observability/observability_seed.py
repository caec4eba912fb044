"""Realistic traces for the observability functional tests, the dashboard test and the CLI tests.

ORDER_TRACE: POST /orders → create_order → db spans (one N+1 group of 6 concurrent
selects, one slow select) → enqueue send_invoice → "async → send_invoice" attempt →
send_invoice → db update + outbound http. FAILED_TRACE: POST /refunds that throws
at functions/refund/index.ts:14 after one committed insert. Plus a few GET traces.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from functions.observability.store import SpanStore
from functions.shared.spans import LogRecord, Span, now_us

ORDER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
FAILED_TRACE = "0af7651916cd43dd8448eb211c80319c"
LIST_TRACES = [f"{n:02x}" * 16 for n in range(0xa1, 0xa5)]


def _span(trace: str, sid: str, parent: str | None, kind: str, name: str, t0: int, start_ms: float, dur_ms: float,
          status: str = "ok", **attrs: Any) -> Span:
    return Span(trace, sid, parent, kind, name, t0 + int(start_ms * 1000), int(dur_ms * 1000), status, attrs)


def order_trace(t0: int) -> tuple[list[Span], list[LogRecord]]:
    t = ORDER_TRACE
    gw, fn, enq, att, fn2 = "a000000000000001", "a000000000000002", "a000000000000020", "a000000000000021", \
        "a000000000000022"
    spans = [
        _span(t, gw, None, "gateway", "POST /orders", t0, 0, 236, **{
            "function": "create_order", "http.method": "POST", "http.route": "/orders", "http.path": "/orders",
            "http.status": 200, "auth.mode": "api_key", "auth.outcome": "ok", "auth.key_name": "web",
            "ratelimit.outcome": "allowed", "ratelimit.remaining": 97}),
        _span(t, fn, gw, "function", "create_order", t0, 1.2, 233, function="create_order", cold=False),
        _span(t, "a000000000000003", fn, "db", "select users", t0, 3, 2.1, function="create_order", table="users",
              operation="select", rows=1, cache="MISS", sql_shape='SELECT "id", "email" FROM "users" WHERE "id" = $1',
              filter_columns=["id"], order_columns=[], truncated=False),
        _span(t, "a000000000000004", fn, "db", "insert orders", t0, 6, 3.4, function="create_order", table="orders",
              operation="insert", rows=1, cache="BYPASS",
              sql_shape='INSERT INTO "orders" ("user_id", "total") VALUES ($1, $2) RETURNING *',
              filter_columns=[], order_columns=[], truncated=False),
    ]
    for i in range(6):
        spans.append(_span(t, f"a0000000000001{i:02d}", fn, "db", "select products", t0, 10 + i * 0.4, 11 + i,
                           function="create_order", table="products", operation="select", rows=1, cache="MISS",
                           sql_shape='SELECT * FROM "products" WHERE "sku" = $1', filter_columns=["sku"],
                           order_columns=[], truncated=False))
    spans += [
        _span(t, "a000000000000005", fn, "db", "select order_items", t0, 30, 168, function="create_order",
              table="order_items", operation="select", rows=240, cache="MISS",
              sql_shape='SELECT * FROM "order_items" WHERE "order_id" = $1 ORDER BY "created_at" DESC',
              filter_columns=["order_id"], order_columns=["created_at"], truncated=False),
        _span(t, enq, fn, "queue", "enqueue send_invoice", t0, 201, 2.5, **{
            "function": "create_order", "queue.function": "send_invoice", "job_id": "job_7f3a9c"}),
        _span(t, att, enq, "queue", "async → send_invoice", t0, 262, 96, function="send_invoice", job_id="job_7f3a9c",
              attempt=1, queue_wait_ms=58, outcome="ok"),
        _span(t, fn2, att, "function", "send_invoice", t0, 263, 93, function="send_invoice", cold=True),
        _span(t, "a000000000000023", fn2, "db", "update orders", t0, 270, 4.2, function="send_invoice",
              table="orders", operation="update", rows=1, cache="BYPASS",
              sql_shape='UPDATE "orders" SET "invoiced" = $1 WHERE "id" = $2', filter_columns=["id"],
              order_columns=[], truncated=False),
        _span(t, "a000000000000024", fn2, "http", "POST api.mail.test", t0, 280, 70, **{
            "function": "send_invoice", "http.method": "POST", "http.host": "api.mail.test", "http.status": 202}),
    ]
    logs = [
        LogRecord(t, fn, t0 + 9_000, "info", "create_order", "order created", {"orderId": 1042}),
        LogRecord(t, fn, t0 + 200_000, "debug", "create_order", "queued invoice", {"job_id": "job_7f3a9c"}),
        LogRecord(t, fn2, t0 + 350_000, "info", "send_invoice", "invoice sent", {"orderId": 1042}),
    ]
    return spans, logs


def failed_trace(t0: int) -> tuple[list[Span], list[LogRecord]]:
    t = FAILED_TRACE
    gw, fn = "b000000000000001", "b000000000000002"
    stack = ("TypeError: Cannot read properties of undefined (reading 'amount')\n"
             "    at handler (functions/refund/index.ts:14:31)")
    spans = [
        _span(t, gw, None, "gateway", "POST /refunds", t0, 0, 21, "error", **{
            "function": "refund", "http.method": "POST", "http.route": "/refunds", "http.path": "/refunds",
            "http.status": 500, "auth.mode": "none", "auth.outcome": "ok", "ratelimit.outcome": "allowed"}),
        _span(t, fn, gw, "function", "refund", t0, 1, 19, "error", **{
            "function": "refund", "cold": False, "error.code": "function_error",
            "error.message": "Cannot read properties of undefined (reading 'amount')", "error.stack": stack,
            "error.file": "functions/refund/index.ts", "error.line": 14}),
        _span(t, "b000000000000003", fn, "db", "select orders", t0, 2, 1.5, function="refund", table="orders",
              operation="select", rows=1, cache="HIT", sql_shape='SELECT * FROM "orders" WHERE "id" = $1',
              filter_columns=["id"], order_columns=[], truncated=False),
        _span(t, "b000000000000004", fn, "db", "insert refunds", t0, 5, 2.2, function="refund", table="refunds",
              operation="insert", rows=1, cache="BYPASS", sql_shape='INSERT INTO "refunds" ("order_id") VALUES ($1)',
              filter_columns=[], order_columns=[], truncated=False),
    ]
    logs = [LogRecord(t, fn, t0 + 4_000, "warn", "refund", "refund without amount", {"orderId": 7}),
            LogRecord(t, fn, t0 + 19_000, "error", "refund", "TypeError: Cannot read properties of undefined", {})]
    return spans, logs


def list_trace(trace_id: str, t0: int, n: int) -> list[Span]:
    gw, fn = f"c{n:015d}", f"d{n:015d}"
    return [
        _span(trace_id, gw, None, "gateway", "GET /orders", t0, 0, 12 + n, **{
            "function": "list_orders", "http.method": "GET", "http.route": "/orders", "http.path": "/orders",
            "http.status": 404 if n == 2 else 200, "auth.mode": "none"}),
        _span(trace_id, fn, gw, "function", "list_orders", t0, 1, 10 + n, function="list_orders"),
        _span(trace_id, f"e{n:015d}", fn, "db", "select orders", t0, 2, 6, function="list_orders", table="orders",
              operation="select", rows=20, cache="HIT" if n % 2 else "MISS",
              sql_shape='SELECT * FROM "orders" ORDER BY "created_at" DESC LIMIT $1', filter_columns=[],
              order_columns=["created_at"], truncated=False),
    ]


def seed(store: SpanStore, now: int | None = None) -> int:
    """Write every seeded trace, newest last, ending shortly before ``now``; returns the order trace's start."""
    now = now or now_us()
    base = now - 60_000_000
    for n, trace_id in enumerate(LIST_TRACES):
        store.write_spans(list_trace(trace_id, base + n * 5_000_000, n))
    spans, logs = failed_trace(base + 30_000_000)
    store.write_spans(spans)
    store.write_logs(logs)
    order_start = base + 40_000_000
    spans, logs = order_trace(order_start)
    store.write_spans(spans)
    store.write_logs(logs)
    return order_start


class FakeAdvice:
    """Shaped like the engine's AdvicePort: a small shop schema and one index suggestion."""

    def schema_graph(self) -> dict[str, Any]:
        def col(name: str, type_: str, nullable: bool = False) -> dict[str, Any]:
            return {"name": name, "type": type_, "nullable": nullable}

        return {"tables": [
            {"name": "users", "columns": [col("id", "bigint"), col("email", "text")], "primary_key": ["id"],
             "foreign_keys": [], "indexes": [{"name": "users_pkey", "columns": ["id"], "unique": True}]},
            {"name": "orders", "columns": [col("id", "bigint"), col("user_id", "bigint"), col("total", "numeric"),
                                           col("invoiced", "boolean", True)],
             "primary_key": ["id"], "foreign_keys": [{"columns": ["user_id"], "ref_table": "users",
                                                      "ref_columns": ["id"]}],
             "indexes": [{"name": "orders_pkey", "columns": ["id"], "unique": True}]},
            {"name": "products", "columns": [col("id", "bigint"), col("sku", "text"), col("price", "numeric")],
             "primary_key": ["id"], "foreign_keys": [],
             "indexes": [{"name": "products_pkey", "columns": ["id"], "unique": True}]},
            {"name": "order_items", "columns": [col("id", "bigint"), col("order_id", "bigint"),
                                                col("product_id", "bigint"), col("created_at", "timestamptz")],
             "primary_key": ["id"], "foreign_keys": [
                 {"columns": ["order_id"], "ref_table": "orders", "ref_columns": ["id"]},
                 {"columns": ["product_id"], "ref_table": "products", "ref_columns": ["id"]}],
             "indexes": [{"name": "order_items_pkey", "columns": ["id"], "unique": True}]},
        ], "suggested_indexes": self.suggest_indexes([])}

    def suggest_indexes(self, spans: Sequence[Span]) -> list[dict[str, Any]]:
        return [{"table": "order_items", "columns": ["order_id", "created_at"],
                 "ddl": 'CREATE INDEX CONCURRENTLY ON "order_items" ("order_id", "created_at")',
                 "reason": "slow select filtered on order_id, ordered by created_at",
                 "est_cost_before": 1843.5, "est_cost_after": 12.3}]
