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
    "unauthorized": "The gateway refused the credentials before the function ran (auth mode {auth_mode}): send "
                    "{credential}; a JWT must be unexpired, signed with an allowed algorithm and, when set, carry the "
                    "project's issuer and audience. Every such failure is the same 401 on purpose.",
    "forbidden": "The API key is valid but its scope does not allow this route (auth mode {auth_mode}); create a key "
                 "with the needed scope (`flux keys create --scope ...`).",
    "route_not_found": "No function answers this method and path; each function's route and method are in its "
                       "flux.json.",
    "payload_too_large": "The body was over limits.max_body_bytes in flux.json; the function did not run.",
    "invalid_json": "The body was not valid JSON; the function did not run.",
}
_CREDENTIALS = {"api_key": "an API key in x-api-key (`flux keys create`)",
                "jwt": "a valid JWT in the configured header (Authorization: Bearer <token> by default)"}


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
    failing = _failing_span(spans) if trace.get("status") == "error" else _refused(spans)
    if failing is None:
        return {**base, "failed": False, "failing_span": None, "error": None, "error_spans": [],
                "next_step": None}
    attrs = _attrs(failing)
    function = str(attrs.get("function") or trace.get("function") or "")
    error = {
        "code": attrs.get("error.code") or ("function_error" if failing.get("kind") == "function" else None),
        "message": attrs.get("error.message") or _gateway_message(failing),
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
            "error": error, "error_spans": error_spans,
            "next_step": next_step(error, function, committed, auth_mode=str(attrs.get("auth.mode") or ""))}


def _refused(spans: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A request the gateway answered with a 4xx before any function ran (401, 403, 413, 429, ...).

    Such traces are not errors of the service (their status stays ``ok``), but ``flux why``
    on one should still say why the caller was turned away: the gateway span holds it.
    """
    if any(s.get("kind") == "function" for s in spans):
        return None
    refused = [s for s in spans if s.get("kind") == "gateway" and 400 <= (_http_status(s) or 0) < 500]
    return min(refused, key=lambda s: (s.get("depth", 0), s.get("start_us", 0))) if refused else None


def _gateway_message(span: dict[str, Any]) -> str:
    if span.get("kind") != "gateway":
        return ""
    attrs = _attrs(span)
    status, code = _http_status(span), attrs.get("error.code")
    if status is None or status < 400:
        return ""
    parts = [f"the gateway answered {status}" + (f" {code}" if code else "") + " before any function ran"]
    if attrs.get("auth.mode"):
        parts.append(f"auth mode {attrs['auth.mode']}, outcome {attrs.get('auth.outcome', '?')}")
    if attrs.get("ratelimit.outcome") and attrs.get("ratelimit.outcome") != "bypass":
        parts.append(f"rate limit {attrs['ratelimit.outcome']}")
    return "; ".join(parts)


def next_step(error: dict[str, Any], function: str, committed: list[dict[str, Any]], *,
              auth_mode: str = "") -> str:
    at = f" at {error['file']}:{error['line']}" if error.get("file") and error.get("line") else ""
    fn_config = f"functions/{function}/flux.json" if function else "the function's flux.json"
    template = _ADVICE.get(str(error.get("code") or ""))
    if template:
        step = template.format(at=at, fn_config=fn_config, auth_mode=auth_mode or "?",
                               credential=_CREDENTIALS.get(auth_mode, "valid credentials"))
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
