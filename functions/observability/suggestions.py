"""Project-wide suggestions (``GET /suggestions``): findings of many recent traces, grouped.

A single trace says "this request did 40 identical selects"; across traces the
useful answer is "this query shape is an N+1 in 12 of the last 50 requests, in
these functions, and this index would help" — so findings are grouped by query
shape, counted, and given a few example trace ids to open.
"""

from __future__ import annotations

from typing import Any

from functions.observability.store import SpanStore
from functions.observability.traces import TraceAssembler
from functions.shared.spans import Span

EXAMPLES = 5


def project_suggestions(store: SpanStore, assembler: TraceAssembler, *, since_us: int | None,
                        limit: int) -> dict[str, Any]:
    summaries = store.list_traces(since_us=since_us, limit=limit)
    n1: dict[tuple[str, str], dict[str, Any]] = {}
    slow: dict[tuple[str, str, str], dict[str, Any]] = {}
    db_spans: list[Span] = []
    for summary in summaries:
        spans = store.get_trace(summary.trace_id)
        db_spans.extend(s for s in spans if s.kind == "db")
        groups, queries = assembler.findings(spans)
        functions = {s.span_id: str(s.attrs.get("function") or "") for s in spans}
        for group in groups:
            key = (str(group.get("table") or ""), str(group.get("sql_shape") or ""))
            entry = n1.setdefault(key, {
                "table": key[0], "sql_shape": key[1], "traces": 0, "max_count": 0, "functions": [],
                "message": str(group.get("message") or ""), "suggestion": str(group.get("suggestion") or ""),
                "trace_ids": [],
            })
            entry["traces"] += 1
            entry["max_count"] = max(entry["max_count"], int(group.get("count") or 0))
            _add(entry["trace_ids"], summary.trace_id)
            _add(entry["functions"], functions.get(str(group.get("parent_span_id")), "") or summary.function)
        for query in queries:
            key3 = (str(query.get("table") or ""), str(query.get("operation") or ""), str(query.get("sql_shape") or ""))
            entry = slow.setdefault(key3, {
                "table": key3[0], "operation": key3[1], "sql_shape": key3[2], "occurrences": 0,
                "max_duration_ms": 0.0, "total_ms": 0.0, "message": str(query.get("message") or ""),
                "trace_ids": [],
            })
            duration = float(query.get("duration_ms") or 0.0)
            entry["occurrences"] += 1
            entry["total_ms"] += duration
            entry["max_duration_ms"] = max(entry["max_duration_ms"], duration)
            _add(entry["trace_ids"], summary.trace_id)
    slow_list = []
    for entry in slow.values():
        total = entry.pop("total_ms")
        entry["avg_duration_ms"] = round(total / entry["occurrences"], 3)
        entry["max_duration_ms"] = round(entry["max_duration_ms"], 3)
        slow_list.append(entry)
    indexes, advice_error = assembler.index_advice(db_spans) if db_spans else ([], None)
    unique_indexes = list({str(i.get("ddl")): i for i in indexes}.values())
    return {
        "traces_scanned": len(summaries),
        "n1_warnings": sorted(n1.values(), key=lambda e: (-e["traces"], -e["max_count"], e["table"])),
        "slow_queries": sorted(slow_list, key=lambda e: (-e["max_duration_ms"], e["table"])),
        "suggested_indexes": unique_indexes,
        "advice_error": advice_error,
    }


def _add(items: list[str], value: str) -> None:
    if value and value not in items and len(items) < EXAMPLES:
        items.append(value)


def recent_db_spans(store: SpanStore, *, traces: int = 50, max_spans: int = 5_000) -> list[Span]:
    """The db spans of the most recent traces: what index advice for the schema graph looks at.

    For the engine's ``PostgresAdvice(recent_spans=...)`` locally and for
    :class:`functions.observability.engine_advice.LambdaAdvice` in AWS.
    """
    spans: list[Span] = []
    for summary in store.list_traces(limit=traces):
        spans.extend(s for s in store.get_trace(summary.trace_id) if s.kind == "db")
        if len(spans) >= max_spans:
            break
    return spans[:max_spans]
