"""``flux why <id>``: from an assembled trace to "what failed, where, what it changed, what to do next".

Pure: it reads the trace response (``GET /traces/{id}``), so it works the same
against ``flux dev``, the local store and the hosted API. The database writes
matter because Flux runs each ``ctx.db.query`` in its own transaction: writes
that succeeded before a throw stay committed, and the user should know which.
"""

from __future__ import annotations

from typing import Any

WRITE_OPERATIONS = frozenset({"insert", "update", "delete", "upsert"})

_ADVICE = {
    "function_timeout": "The function ran past its timeout_ms. Look at the slowest spans above; if the work is "
                        "legitimate, raise timeout_ms in {fn_config}.",
    "database_unavailable": "Postgres was unreachable. Check that the database is up and that the configured "
                            "database (flux.json database, DATABASE_URL, or the stage's database secret) "
                            "reaches it; the request is safe to retry.",
    "invalid_query": "A ctx.db query was refused before it ran{at}: table, column and operator names are checked "
                     "against the live schema. Fix the query or run `flux db migrate`.",
    "runtime_crashed": "The Deno worker died while running the function (often memory): check memory_mb in "
                       "{fn_config} and large in-memory work{at}.",
    "validation_failed": "The input did not match input_schema in {fn_config}; the function did not run.",
    "rate_limited": "The caller was rate limited before the function ran; see rate_limit in flux.json.",
}


def _attrs(span: dict[str, Any]) -> dict[str, Any]:
    return span.get("attrs") or {}


def _http_status(span: dict[str, Any]) -> int | None:
    try:
        return int(_attrs(span)["http.status"])
    except (KeyError, TypeError, ValueError):
        return None


def _failing_span(spans: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The span that best explains the failure: where the throw happened, deepest first."""
    errors = [s for s in spans if s.get("status") == "error"]
    located = [s for s in errors if _attrs(s).get("error.file")]
    functions = [s for s in errors if s.get("kind") == "function"]
    for group in (located, functions, errors):
        if group:
            return max(group, key=lambda s: (s.get("depth", 0), s.get("start_us", 0)))
    failed_roots = [s for s in spans if (_http_status(s) or 0) >= 500]
    return failed_roots[0] if failed_roots else None


def db_writes(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    writes = []
    for span in spans:
        attrs = _attrs(span)
        operation = str(attrs.get("operation") or span.get("name", "").split(" ", 1)[0]).lower()
        if span.get("kind") == "db" and operation in WRITE_OPERATIONS:
            writes.append({"span_id": span["span_id"], "table": attrs.get("table"), "operation": operation,
                           "rows": attrs.get("rows"), "status": span.get("status"), "function": attrs.get("function"),
                           "async": bool(span.get("async")), "start_us": span.get("start_us")})
    return sorted(writes, key=lambda w: w["start_us"] or 0)


def explain_failure(trace: dict[str, Any]) -> dict[str, Any]:
    spans: list[dict[str, Any]] = trace.get("spans") or []
    writes = db_writes(spans)
    base = {"trace_id": trace.get("trace_id"), "name": trace.get("name"), "function": trace.get("function"),
            "http_status": trace.get("http_status"), "db_writes": writes}
    failing = _failing_span(spans) if trace.get("status") == "error" else None
    if failing is None:
        return {**base, "failed": False, "failing_span": None, "error": None, "error_spans": [],
                "next_step": None}
    attrs = _attrs(failing)
    function = str(attrs.get("function") or trace.get("function") or "")
    error = {
        "code": attrs.get("error.code") or ("function_error" if failing.get("kind") == "function" else None),
        "message": attrs.get("error.message") or "",
        "file": attrs.get("error.file"),
        "line": attrs.get("error.line"),
        "stack": attrs.get("error.stack"),
    }
    error_spans = [{"span_id": s["span_id"], "kind": s.get("kind"), "name": s.get("name"),
                    "code": _attrs(s).get("error.code"), "message": _attrs(s).get("error.message")}
                   for s in spans if s.get("status") == "error"]
    failed_at = failing.get("start_us", 0) + failing.get("duration_us", 0)
    committed = [w for w in writes if w["status"] == "ok" and (w["start_us"] or 0) <= failed_at and not w["async"]]
    return {**base, "failed": True, "failing_span": {k: v for k, v in failing.items() if k != "children"},
            "error": error, "error_spans": error_spans, "next_step": next_step(error, function, committed)}


def next_step(error: dict[str, Any], function: str, committed: list[dict[str, Any]]) -> str:
    at = f" at {error['file']}:{error['line']}" if error.get("file") and error.get("line") else ""
    fn_config = f"functions/{function}/flux.json" if function else "the function's flux.json"
    template = _ADVICE.get(str(error.get("code") or ""))
    if template:
        step = template.format(at=at, fn_config=fn_config)
    elif at:
        message = f" ({error['message']})" if error.get("message") else ""
        step = f"Open {error['file']}:{error['line']}{message} and fix the throw; `flux invoke` replays the request."
    else:
        step = "Open the trace in the dashboard (/_flux/) and read the error span's attributes and the request logs."
    if committed:
        tables = ", ".join(sorted({f"{w['operation']} {w['table']}" for w in committed}))
        step += (f" Note: {len(committed)} database write(s) were committed before the failure ({tables}); "
                 "ctx.db.batch([...]) runs writes in one transaction so they roll back together.")
    return step
