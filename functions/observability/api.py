"""The observability HTTP API and dashboard, as one API Gateway v2 handler.

``ObservabilityApi.handle(event) -> proxy result`` is the single code path for
every way the API is reached: ``flux dev`` converts its requests with
:mod:`functions.shared.apigw`, :mod:`functions.observability.asgi` does the same
for uvicorn, the CLI calls it in-process against ``.flux/traces.db``, and the
hosted Lambda (:mod:`functions.aws.entry_observability`) passes the real event.

Routes live under ``prefix`` (``/_flux/api``): ``GET /traces``, ``/traces/{id}``,
``/logs``, ``/schema/graph``, ``/suggestions``, ``/openapi.json``. The dashboard
files are served under ``dashboard_path`` (``/_flux``) without the admin check:
they hold no data, and the page asks for a key when the API answers 401.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from functions.observability.dashboard_assets import DashboardAssets
from functions.observability.errors import MethodNotAllowed, SchemaUnavailable, TraceNotFound
from functions.observability.openapi import openapi_document
from functions.observability.params import QueryParams, trace_id_of
from functions.observability.store import SpanStore
from functions.observability.suggestions import project_suggestions
from functions.observability.traces import AdviceSource, DefaultThresholds, Detectors, Thresholds, TraceAssembler
from functions.shared.apigw import proxy_result
from functions.shared.errors import FluxError, RouteNotFound, Unauthorized, error_response
from functions.shared.ids import new_trace_id, parse_request_id
from functions.shared.spans import now_us

_log = logging.getLogger("flux.observability")

TRACE_LOG_LIMIT = 1_000


class ObservabilityApi:
    def __init__(self, store: SpanStore, *, settings: Thresholds | None = None,
                 advice: AdviceSource | None = None, prefix: str = "/_flux/api",
                 authorize: Callable[[dict[str, Any]], bool] | None = None, dashboard_path: str | None = None,
                 detectors: Detectors | None = None, clock: Callable[[], int] = now_us) -> None:
        self.store = store
        self.settings = settings or DefaultThresholds()
        self.advice = advice
        self.prefix = "/" + prefix.strip("/")
        self.authorize = authorize
        self.assembler = TraceAssembler(self.settings, detectors=detectors, advice=advice)
        if dashboard_path is None:
            dashboard_path = self.prefix.removesuffix("/api") or "/"
        self.dashboard = DashboardAssets(dashboard_path, self.prefix)
        self.clock = clock
        self._routes: dict[str, Callable[[QueryParams], Any]] = {
            "/traces": self._list_traces,
            "/logs": self._list_logs,
            "/schema/graph": self._schema_graph,
            "/suggestions": self._suggestions,
            "/openapi.json": self._openapi,
        }

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        request_id = parse_request_id(headers.get("x-request-id")) or new_trace_id()
        http = (event.get("requestContext") or {}).get("http") or {}
        method = str(http.get("method") or "GET").upper()
        path = str(event.get("rawPath") or http.get("path") or "/")
        try:
            return self._dispatch(event, method, path, request_id)
        except FluxError as err:
            return error_response(err, request_id)
        except Exception:  # noqa: BLE001 - the API answers with the standard body even when a store breaks
            _log.exception("observability API failed on %s %s", method, path)
            return error_response(FluxError("internal error; see the server log"), request_id)

    def _dispatch(self, event: dict[str, Any], method: str, path: str, request_id: str) -> dict[str, Any]:
        if path != "/" and path.endswith("/") and path.rstrip("/") != self.dashboard.base_path:
            path = path.rstrip("/")
        if path == self.prefix or path.startswith(self.prefix + "/"):
            sub = path[len(self.prefix):]
            handler = self._routes.get(sub)
            if handler is None and sub.startswith("/traces/") and sub.count("/") == 2:
                trace_id = sub.removeprefix("/traces/")
                handler = lambda params: self._get_trace(trace_id, params)  # noqa: E731
            if handler is None:
                raise RouteNotFound(f"no observability API route at {path}")
            if method != "GET":
                raise MethodNotAllowed(f"{method} is not allowed on {path}; use GET", headers={"allow": "GET"})
            if self.authorize is not None and not self.authorize(event):
                raise Unauthorized("missing or invalid admin API key")
            params = QueryParams(event.get("queryStringParameters"), self.clock())
            return proxy_result(200, handler(params), headers={"x-request-id": request_id,
                                                               "cache-control": "no-store"})
        if self.dashboard.matches(path):
            if method != "GET":
                raise MethodNotAllowed(f"{method} is not allowed on {path}; use GET", headers={"allow": "GET"})
            served = self.dashboard.serve(path, request_id)
            if served is not None:
                return served
        raise RouteNotFound(f"nothing at {path}")

    # -- routes ---------------------------------------------------------------------------------------------------

    def _list_traces(self, params: QueryParams) -> dict[str, Any]:
        summaries = self.store.list_traces(function=params.function(), status=params.status(),
                                           since_us=params.since_us(), limit=params.limit(50, 1000))
        traces = [{**s.to_dict(), "duration_ms": round(s.duration_us / 1000, 3)} for s in summaries]
        return {"traces": traces, "count": len(traces)}

    def _get_trace(self, raw_id: str, params: QueryParams) -> dict[str, Any]:
        trace_id = trace_id_of(raw_id)
        spans = self.store.get_trace(trace_id)
        if not spans:
            raise TraceNotFound(f"no trace {trace_id} (it may not be written yet, or it has expired)")
        logs = self.store.list_logs(request_id=trace_id, limit=TRACE_LOG_LIMIT)
        return self.assembler.assemble(spans, logs)

    def _list_logs(self, params: QueryParams) -> dict[str, Any]:
        records = self.store.list_logs(function=params.function(), level=params.level(), since_us=params.since_us(),
                                       request_id=params.request_id(), limit=params.limit(100, 10_000))
        return {"logs": [r.to_dict() for r in records], "count": len(records)}

    def _schema_graph(self, params: QueryParams) -> dict[str, Any]:
        if self.advice is None:
            raise SchemaUnavailable("no database is connected to this API, so there is no schema graph "
                                    "(configure `database` in flux.json)")
        return self.advice.schema_graph()

    def _suggestions(self, params: QueryParams) -> dict[str, Any]:
        return project_suggestions(self.store, self.assembler, since_us=params.since_us(),
                                   limit=params.limit(50, 200))

    def _openapi(self, params: QueryParams) -> dict[str, Any]:
        return openapi_document(self.prefix)
