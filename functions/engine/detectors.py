"""Pure detectors over a trace's spans: N+1 queries and slow queries.

N+1 is "the same ``sql_shape`` at least ``threshold`` times under one parent span". Grouping
by parent rather than by time is what catches the concurrent form too: a
``Promise.all(items.map(i => ctx.db.query(...)))`` loop issues overlapping queries that a
sequential-gap heuristic would miss, yet they still share a parent (the function span)
and a shape. Each warning says whether the repeats overlapped, and rewrites the loop as
the one ``in`` query (or bulk insert) that replaces it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from functions.shared.spans import Span


def find_n_plus_one(spans: Sequence[Span], threshold: int) -> list[dict[str, Any]]:
    groups: dict[tuple[str | None, str], list[Span]] = {}
    for span in spans:
        shape = span.attrs.get("sql_shape")
        if span.kind == "db" and isinstance(shape, str) and shape:
            groups.setdefault((span.parent_span_id, shape), []).append(span)
    warnings = []
    for (parent, shape), group in groups.items():
        if len(group) < max(2, threshold):
            continue
        group = sorted(group, key=lambda s: (s.start_us, s.span_id))
        attrs = group[0].attrs
        table = str(attrs.get("table") or "?")
        operation = str(attrs.get("operation") or "select")
        concurrent = _overlapping(group)
        total_ms = sum(s.duration_us for s in group) / 1000
        how = "concurrently (Promise.all over a list)" if concurrent else "one after another (a loop of awaits)"
        suggestion, suggested_query = _rewrite(attrs)
        embed = _embed_rewrite(attrs, _earlier(spans, parent, group[0]))
        alternative = None
        if embed is not None:
            alternative = suggested_query
            suggestion, suggested_query = embed[0] + (f" Or, keeping two queries: {suggestion}" if alternative
                                                      else ""), embed[1]
        warnings.append({
            "table": table,
            "count": len(group),
            "sql_shape": shape,
            "parent_span_id": parent,
            "span_ids": [s.span_id for s in group],
            "concurrent": concurrent,
            "operation": operation,
            "function": attrs.get("function"),
            "total_duration_ms": round(total_ms, 3),
            "message": f"N+1 query: `{operation} {table}` ran {len(group)} times under one parent span, {how}; "
                       f"{_ms(total_ms)} in total",
            "suggestion": suggestion,
            "suggested_query": suggested_query,
            **({"alternative_query": alternative} if embed is not None and alternative is not None else {}),
        })
    warnings.sort(key=lambda w: (-w["count"], w["table"]))
    return warnings


def find_slow_queries(spans: Sequence[Span], slow_query_ms: int) -> list[dict[str, Any]]:
    found = []
    for span in spans:
        if span.kind != "db" or span.duration_us <= slow_query_ms * 1000:
            continue
        attrs = span.attrs
        table = str(attrs.get("table") or "?")
        operation = str(attrs.get("operation") or "?")
        duration_ms = span.duration_us / 1000
        filters = [str(c) for c in attrs.get("filter_columns") or []]
        on = f" filtering on {', '.join(filters)}" if filters else ""
        found.append({
            "span_id": span.span_id,
            "table": table,
            "operation": operation,
            "duration_ms": round(duration_ms, 3),
            "sql_shape": attrs.get("sql_shape"),
            "rows": attrs.get("rows"),
            "message": f"slow query: `{operation} {table}`{on} took {_ms(duration_ms)} "
                       f"(slow_query_ms is {slow_query_ms})",
        })
    found.sort(key=lambda f: -f["duration_ms"])
    return found


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if value >= 10 else f"{value:.2f} ms"


def _overlapping(group: list[Span]) -> bool:
    """True when any query started before an earlier one (by start time) had finished."""
    end = group[0].start_us + group[0].duration_us
    for span in group[1:]:
        if span.start_us < end:
            return True
        end = max(end, span.start_us + span.duration_us)
    return False


def _earlier(spans: Sequence[Span], parent: str | None, first: Span) -> list[Span]:
    """The db spans under the same parent that started before the loop did, latest first."""
    return sorted((s for s in spans if s.kind == "db" and s.parent_span_id == parent and s.start_us < first.start_us),
                  key=lambda s: -s.start_us)


def _embed_rewrite(attrs: dict[str, Any], earlier: list[Span]) -> tuple[str, dict[str, Any]] | None:
    """When the loop follows a foreign key, the one embedded select that replaces the loop *and* its driver.

    The engine records, per equality filter on a foreign-key column, which table the rows
    belong to (``embed_hints``). The query that produced the loop's ids is the latest
    earlier query on that table under the same parent; without one, a single hint is
    still unambiguous.
    """
    if str(attrs.get("operation") or "select") != "select":
        return None
    hints = [h for h in attrs.get("embed_hints") or [] if isinstance(h, dict) and h.get("table")]
    if not hints:
        return None
    chosen, driver = None, None
    for span in earlier:
        chosen = next((h for h in hints if h["table"] == span.attrs.get("table")), None)
        if chosen is not None:
            driver = span
            break
    if chosen is None:
        if len(hints) != 1:
            return None
        chosen = hints[0]
    table, child = str(chosen["table"]), str(chosen.get("embed_table") or attrs.get("table"))
    many = bool(chosen.get("many"))
    alias = child if many else _singular(child)
    inner: dict[str, Any] = {"table": child}
    key = chosen.get("column")
    rest = [(c, o) for c, o in zip(attrs.get("filter_columns") or [], attrs.get("filter_ops") or [], strict=False)
            if not (c == key and o == "eq")]
    if rest:
        inner["filters"] = [_placeholder(c, o) for c, o in rest]
    query: dict[str, Any] = {"table": table, "operation": "select"}
    if driver is not None:
        driving = list(zip(driver.attrs.get("filter_columns") or [], driver.attrs.get("filter_ops") or [],
                           strict=False))
        if driving:
            query["filters"] = [_placeholder(c, o) for c, o in driving]
    query["embed"] = {alias: inner}
    shape = "a list" if many else "an object (or null)"
    text = (f"Fetch the `{table}` rows with their `{child}` embedded, in one statement: {_call(query)} — each "
            f"`{table}` row then carries `{alias}` as {shape}, so the loop and its queries go away.")
    return text, _plain(query)


def _placeholder(column: str, op: str) -> dict[str, Any]:
    if op in ("is_null", "not_null"):
        return {"column": column, "op": op}
    return {"column": column, "op": op.removeprefix("path_"), "value": _Bare("...")}


def _singular(name: str) -> str:
    if name.endswith("ies"):
        return name[:-3] + "y"
    if name.endswith("s") and not name.endswith("ss"):
        return name[:-1]
    return name


class _Bare(str):
    """A value shown as a bare JavaScript name (a variable) instead of a string literal."""


def _rewrite(attrs: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """The one query that replaces the loop, as advice text and as the ctx.db.query object."""
    table = str(attrs.get("table") or "?")
    operation = str(attrs.get("operation") or "select")
    columns = [str(c) for c in attrs.get("filter_columns") or []]
    ops = [str(o) for o in attrs.get("filter_ops") or []] or ["eq"] * len(columns)
    if operation in ("insert", "upsert"):
        query: dict[str, Any] = {"table": table, "operation": operation, "data": _Bare("rows")}
        return (f"Insert all rows at once: {_call(query)} with `rows` the array of objects the loop "
                "inserted one by one.", _plain(query))
    key = _loop_column(columns, ops)
    if key is None:
        return ("The repeated query has no equality filter to turn into an `in` list; fetch the rows once before "
                "the loop (or send the queries together with ctx.db.batch([...])).", None)
    variable = _Bare(_plural(key))
    filters: list[dict[str, Any]] = []
    for column, op in zip(columns, ops, strict=False):
        if column == key and op == "eq":
            filters.append({"column": key, "op": "in", "value": variable})
        elif op in ("is_null", "not_null"):
            filters.append({"column": column, "op": op})
        else:
            filters.append({"column": column, "op": op, "value": _Bare("...")})
    query = {"table": table, "operation": operation, "filters": filters}
    if operation == "select":
        return (f"Fetch them in one query: {_call(query)} where `{variable}` is the list of {key} "
                f"values the loop went through; then group the rows by `{key}` in memory.", _plain(query))
    if operation == "update":
        query["data"] = _Bare("{...}")
        return (f"If every row gets the same change, update them in one query: {_call(query)}; "
                "otherwise send the updates together with ctx.db.batch([...]) (one transaction).", _plain(query))
    return (f"Delete them in one query: {_call(query)} where `{variable}` lists the {key} values.", _plain(query))


def _loop_column(columns: list[str], ops: list[str]) -> str | None:
    equal = [c for c, o in zip(columns, ops, strict=False) if o == "eq"]
    if not equal:
        return None
    for column in equal:
        if column == "id" or column.endswith("_id"):
            return column
    return equal[0]


def _plural(column: str) -> str:
    head, *rest = column.split("_")
    camel = head + "".join(part.capitalize() for part in rest)
    return camel[:-1] + "ies" if camel.endswith("y") else camel + ("es" if camel.endswith("s") else "s")


def _js(query: Any) -> str:
    """Render as a JavaScript object literal: bare keys, :class:`_Bare` values as names."""
    if isinstance(query, _Bare):
        return str(query)
    if isinstance(query, dict):
        return "{ " + ", ".join(f"{k}: {_js(v)}" for k, v in query.items()) + " }"
    if isinstance(query, list):
        return "[" + ", ".join(_js(v) for v in query) + "]"
    return json.dumps(query)


def _plain(query: Any) -> Any:
    if isinstance(query, dict):
        return {k: _plain(v) for k, v in query.items()}
    if isinstance(query, list):
        return [_plain(v) for v in query]
    return str(query) if isinstance(query, _Bare) else query


def _call(query: dict[str, Any]) -> str:
    return f"ctx.db.query({_js(query)})"
