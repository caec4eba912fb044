"""The OpenAPI 3.1 document of the observability API, written by hand to match the responses exactly.

Objects this layer builds are closed (``additionalProperties: false``) so a
property-based run (schemathesis) against this document catches any drift
between the code and the contract; objects the engine builds (detector
findings, index advice, the schema graph) list their required fields and stay
open so the engine may add detail.
"""

from __future__ import annotations

from typing import Any

_STR = {"type": "string"}
_INT = {"type": "integer"}
_NUM = {"type": "number"}
_BOOL = {"type": "boolean"}
_NULL_STR = {"type": ["string", "null"]}
_STRS = {"type": "array", "items": _STR}


def _obj(props: dict[str, Any], *, closed: bool = True, required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props) if required is None else required,
            "additionalProperties": not closed}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _array(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


_SPAN_PROPS: dict[str, Any] = {
    "trace_id": _STR, "span_id": _STR, "parent_span_id": _NULL_STR,
    "kind": {"type": "string", "description": "gateway | function | db | queue | http | custom"},
    "name": _STR, "start_us": _INT, "duration_us": _INT, "status": {"type": "string", "enum": ["ok", "error"]},
    "attrs": {"type": "object"},
    "offset_us": {**_INT, "description": "start relative to the earliest span of the trace"},
    "depth": {**_INT, "minimum": 0}, "orphan": {**_BOOL, "description": "parent not (yet) in the store"},
    "async": {**_BOOL, "description": "inside an `async →` branch"}, "n_plus_one": _BOOL, "slow": _BOOL,
    "critical": {**_BOOL, "description": "on the critical path"},
}

SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": _STR, "message": _STR, "request_id": _STR}),
    "TraceSummary": _obj({
        "trace_id": _STR, "name": _STR, "function": _STR, "kind": _STR, "status": _STR,
        "http_status": {"type": ["integer", "null"]}, "start_us": _INT, "duration_us": _INT,
        "method": _NULL_STR, "route": _NULL_STR, "duration_ms": _NUM}),
    "TraceList": _obj({"traces": _array("TraceSummary"), "count": _INT}),
    "Span": _obj(_SPAN_PROPS),
    "SpanNode": _obj({**_SPAN_PROPS, "children": _array("SpanNode")}),
    "LogRecord": _obj({"trace_id": _STR, "span_id": _NULL_STR, "ts_us": _INT, "level": _STR, "function": _STR,
                       "message": _STR, "fields": {"type": "object"}}),
    "LogList": _obj({"logs": _array("LogRecord"), "count": _INT}),
    "NPlusOne": _obj({"table": _STR, "count": _INT, "sql_shape": _STR, "parent_span_id": _NULL_STR,
                      "span_ids": _STRS, "concurrent": _BOOL, "message": _STR, "suggestion": _STR},
                     closed=False, required=["table", "count", "sql_shape", "message", "suggestion"]),
    "SlowQuery": _obj({"span_id": _STR, "table": _STR, "operation": _STR, "duration_ms": _NUM,
                       "sql_shape": _NULL_STR, "message": _STR}, closed=False),
    "IndexSuggestion": _obj({"table": _STR, "columns": _STRS, "ddl": _STR, "reason": _STR,
                             "est_cost_before": {"type": ["number", "null"]},
                             "est_cost_after": {"type": ["number", "null"]}},
                            closed=False, required=["table", "columns", "ddl", "reason"]),
    "Trace": _obj({
        "trace_id": _STR, "name": _STR, "function": _STR, "start_us": _INT, "duration_ms": _NUM,
        "status": {"type": "string", "enum": ["ok", "error"]}, "http_status": {"type": ["integer", "null"]},
        "span_count": _INT, "root": _ref("SpanNode"), "spans": _array("Span"), "critical_path": _STRS,
        "n1_warnings": _array("NPlusOne"), "slow_queries": _array("SlowQuery"),
        "suggested_indexes": _array("IndexSuggestion"), "advice_error": _NULL_STR, "logs": _array("LogRecord")}),
    "SchemaGraph": _obj({
        "tables": {"type": "array", "items": _obj({
            "name": _STR,
            "columns": {"type": "array", "items": _obj({"name": _STR, "type": _STR, "nullable": _BOOL},
                                                       closed=False)},
            "primary_key": _STRS,
            "foreign_keys": {"type": "array", "items": _obj({"columns": _STRS, "ref_table": _STR,
                                                             "ref_columns": _STRS}, closed=False)},
            "indexes": {"type": "array", "items": _obj({"name": _STR, "columns": _STRS, "unique": _BOOL},
                                                       closed=False)},
        }, closed=False, required=["name", "columns"])},
        "suggested_indexes": {"type": "array", "items": {"type": "object"}}}, closed=False, required=["tables"]),
    "Suggestions": _obj({
        "traces_scanned": _INT,
        "n1_warnings": {"type": "array", "items": _obj({
            "table": _STR, "sql_shape": _STR, "traces": _INT, "max_count": _INT, "functions": _STRS,
            "message": _STR, "suggestion": _STR, "trace_ids": _STRS})},
        "slow_queries": {"type": "array", "items": _obj({
            "table": _STR, "operation": _STR, "sql_shape": _STR, "occurrences": _INT, "max_duration_ms": _NUM,
            "avg_duration_ms": _NUM, "message": _STR, "trace_ids": _STRS})},
        "suggested_indexes": _array("IndexSuggestion"), "advice_error": _NULL_STR}),
}


def _param(name: str, description: str, schema: dict[str, Any], where: str = "query") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "description": description, "schema": schema}


_ID_PATTERN = ("^([0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
               "[0-9a-fA-F]{12})$")
_SINCE = _param("since", "ISO 8601 instant or an age such as 15m, 2h, 1d (s, m, h, d, w)", {"anyOf": [
    {"type": "string", "pattern": "^[0-9]{1,9} *[smhdwSMHDW]$"},
    {"type": "string", "format": "date-time"},
    {"type": "string", "format": "date"},
]})
_FUNCTION = _param("function", "function name", {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"})


def _limit(default: int, maximum: int) -> dict[str, Any]:
    return _param("limit", "how many to return", {"type": "integer", "minimum": 1, "maximum": maximum,
                                                  "default": default})


def _response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(summary: str, op_id: str, ok: dict[str, Any], params: list[dict[str, Any]],
               errors: dict[str, str]) -> dict[str, Any]:
    responses = {"200": _response("OK", ok)}
    for status, text in {"400": "invalid parameter", "401": "missing or invalid admin API key", **errors}.items():
        responses[status] = _response(text, _ref("Error"))
    return {"get": {"summary": summary, "operationId": op_id, "parameters": params, "responses": responses}}


def openapi_document(prefix: str = "/_flux/api") -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Flux observability API", "version": "1.0.0",
                 "description": "Traces, logs, schema graph and suggestions of a Flux project."},
        "servers": [{"url": prefix}],
        "security": [{}, {"adminKey": []}],
        "paths": {
            "/traces": _operation("Recent requests, newest first", "listTraces", _ref("TraceList"), [
                _FUNCTION, _param("status", "ok or error", {"type": "string", "enum": ["ok", "error"]}),
                _SINCE, _limit(50, 1000)], {}),
            "/traces/{trace_id}": _operation(
                "One trace: span tree, critical path, N+1, slow queries, index suggestions", "getTrace",
                _ref("Trace"), [_param("trace_id", "the request id: 32 hex characters or a UUID",
                                {"type": "string", "pattern": _ID_PATTERN}, "path")],
                {"404": "no such trace"}),
            "/logs": _operation("Log records, oldest first within the newest `limit`", "listLogs", _ref("LogList"), [
                _FUNCTION, _param("level", "this level and more severe",
                                  {"type": "string", "enum": ["debug", "info", "warn", "error"]}),
                _SINCE, _param("request_id", "only this request's logs", {"type": "string", "pattern": _ID_PATTERN}),
                _limit(100, 10_000)], {}),
            "/schema/graph": _operation("Tables, keys, indexes and suggested indexes", "schemaGraph",
                                        _ref("SchemaGraph"), [],
                                        {"502": "the engine function failed", "503": "no database connected"}),
            "/suggestions": _operation("N+1, slow queries and index suggestions over recent traces", "suggestions",
                                       _ref("Suggestions"), [_SINCE, _limit(50, 200)], {}),
            "/openapi.json": _operation("This document", "openapi", {"type": "object"}, [], {}),
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"adminKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
        },
    }
