"""The request pipeline of a function behind API Gateway: event in, proxy result out.

This is the code a runtime Lambda runs for every HTTP request and the code
``flux dev`` runs behind its local gateway, so both behave the same:

1. make the trace id (always a fresh one; an incoming ``x-request-id`` / ``traceparent``
   is recorded on the gateway span for correlation, see functions/shared/ids.py);
2. read the authorizer's verdict once (it soft-denies: see functions/gateway/authorizer.py and
   functions/gateway/verdict.py) and refuse the request when it says so;
3. enforce ``max_body_bytes``, read ``input`` by content type (JSON, form fields, or
   nothing: functions/gateway/validation.py), merge path and query parameters,
   validate ``input_schema``, and build ``ctx.request`` (functions/shared/apigw.py);
4. run the function (or enqueue it when it is ``async``: 202 with the job id); a
   returned Web ``Response`` becomes the proxy result as it is, anything else 200 JSON;
5. map any error to the standard body, stamp ``x-request-id`` and rate-limit
   headers, and record the gateway span that roots the trace.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from functions.gateway.validation import read_input, validate_input
from functions.gateway.verdict import Verdict
from functions.runtime.ports import Invoker, QueueService
from functions.shared.apigw import FunctionResponse, event_body, proxy_result, request_view, response_result
from functions.shared.context import CallContext
from functions.shared.errors import FluxError, RouteNotFound, Unauthorized, error_response
from functions.shared.ids import incoming_trace
from functions.shared.spans import SpanSink, start_span

if TYPE_CHECKING:
    from functions.shared.manifest import FunctionSpec, Project

_log = logging.getLogger("flux.gateway.pipeline")
# Read by callers in AWS as much as locally: point at the trace, which both have, not at a terminal.
INTERNAL_ERROR_MESSAGE = "internal error; `flux why <request id>` shows what failed"
# What a request that no authorizer saw is served as (only allowed on a route with ``auth: "none"``).
NO_AUTHORIZER = Verdict(allowed=True)


class HttpPipeline:
    def __init__(self, project: Project, invoker: Invoker, *, sink: SpanSink,
                 enqueue: QueueService | None = None,
                 on_complete: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.invoker = invoker
        self.sink = sink
        self.enqueue = enqueue
        self.on_complete = on_complete
        self.set_project(project)

    def set_project(self, project: Project) -> None:
        self.project = project
        self._by_route_key = {spec.route_key: spec for spec in project.functions.values()
                              if not spec.internal}

    def function_for(self, event: dict[str, Any]) -> FunctionSpec | None:
        return self._by_route_key.get(str(event.get("routeKey") or ""))

    async def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        incoming = incoming_trace(headers)
        trace_id = incoming.trace_id
        http = (event.get("requestContext") or {}).get("http") or {}
        spec = self.function_for(event)
        verdict = Verdict.from_event(event)
        seen = verdict or NO_AUTHORIZER
        root_attrs: dict[str, Any] = {
            "function": spec.name if spec else "",
            "http.method": str(http.get("method") or ""),
            "http.path": str(http.get("path") or event.get("rawPath") or ""),
            "http.route": spec.route if spec else str(event.get("routeKey") or ""),
            "request_id.source": incoming.source,
        }
        root_attrs.update(incoming.correlation())
        root_attrs.update(seen.span_attrs())
        span = start_span(trace_id, incoming.parent_span_id, "gateway", str(event.get("routeKey") or "unrouted"),
                          **root_attrs)
        extra_headers = seen.ratelimit_headers()
        try:
            if spec is None:
                raise RouteNotFound(f"no function at {http.get('method', '?')} {http.get('path', '?')}")
            _check_verdict(spec, verdict)
            body = event_body(event)
            value = self._input(event, body, headers.get("content-type"), spec)
            # A queued job has no client request of its own: only a synchronous call gets ctx.request.
            request = None if spec.is_async else request_view(event, body, route=spec.route)
            call = CallContext(trace_id, span.span_id, spec.name, trace_id, self.sink, seen.auth(),
                               request=request)
            if spec.is_async:
                if self.enqueue is None:
                    raise FluxError(f"{spec.name} is async but no queue is configured")
                job = await self.enqueue.push(spec.name, value, {}, call)
                result = proxy_result(202, {"request_id": trace_id, "job_id": job["job_id"]})
            else:
                output = await self.invoker.invoke(spec.name, value, call)
                result = response_result(output) if isinstance(output, FunctionResponse) else \
                    proxy_result(200, output)
        except FluxError as exc:
            result = error_response(exc, trace_id)
        except Exception:  # noqa: BLE001 - a bug must still answer with the standard body
            _log.exception("unexpected failure serving %s", event.get("routeKey"))
            result = error_response(FluxError(INTERNAL_ERROR_MESSAGE), trace_id)
        merged = {**result.get("headers", {}), **extra_headers, "x-request-id": trace_id}
        result["headers"] = {k.lower(): v for k, v in merged.items()}
        status = int(result["statusCode"])
        finished = span.finish("error" if status >= 500 else "ok", **{"http.status": status})
        if status >= 400:
            try:
                finished.attrs["error.code"] = json.loads(result["body"]).get("error")
            except (ValueError, AttributeError):
                pass
        self.sink.write_spans([finished])
        if self.on_complete is not None:
            self.on_complete({"trace_id": trace_id, "status": status, "duration_us": finished.duration_us,
                              "method": root_attrs["http.method"], "path": root_attrs["http.path"],
                              "function": root_attrs["function"]})
        return result

    def _input(self, event: dict[str, Any], body: bytes, content_type: str | None, spec: FunctionSpec) -> Any:
        value = read_input(body, content_type, self.project.config.limits.max_body_bytes)
        params = dict(event.get("queryStringParameters") or {})
        path_params = dict(event.get("pathParameters") or {})
        if value is None:
            value = {}
        if isinstance(value, dict):
            value = {**params, **value, **path_params}
        if spec.config.input_schema is not None:
            validate_input(spec.config.input_schema, value)
        return value


def _check_verdict(spec: FunctionSpec, verdict: Verdict | None) -> None:
    """Raise the authorizer's refusal; a protected route reached without any verdict fails closed."""
    if verdict is None:
        if spec.auth != "none":
            raise Unauthorized("missing or invalid credentials")
        return
    error = verdict.denial()
    if error is not None:
        raise error
