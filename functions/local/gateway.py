"""The local gateway: an ASGI app that plays API Gateway for `flux dev`.

Like Chalice's ``local.py`` it only translates: an HTTP request is matched to a
route, turned into the API Gateway v2 event (functions/shared/apigw.py), passed
through the same authorizer code the Lambda authorizer runs, and handed to the
same :class:`~functions.runtime.http.HttpPipeline` a runtime Lambda runs. The
proxy result is turned back into the HTTP response. CORS, which API Gateway
answers itself in AWS, is answered here. ``/_flux/*`` goes to the observability
API and dashboard.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from functions.gateway.routing import RouteTable
from functions.runtime.http import HttpPipeline
from functions.shared.apigw import HttpRequest, HttpResponse, build_event, to_http_response
from functions.shared.manifest import Project

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Authorize = Callable[[dict[str, Any]], dict[str, Any]]


class LocalGateway:
    def __init__(self, project: Project, pipeline: HttpPipeline, *, authorize: Authorize | None = None,
                 flux_app: AsgiApp | None = None) -> None:
        self.pipeline = pipeline
        self.authorize = authorize
        self.flux_app = flux_app
        self.set_project(project)

    def set_project(self, project: Project) -> None:
        self.project = project
        self.routes = RouteTable.from_project(project)
        self.pipeline.set_project(project)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope.get("path") or "/"
        if self.flux_app is not None and (path == "/_flux" or path.startswith("/_flux/")):
            await self.flux_app(scope, receive, send)
            return
        request = await self._read_request(scope, receive)
        response = await self.handle(request)
        await _send_response(send, response)

    async def handle(self, request: HttpRequest) -> HttpResponse:
        """One request through the local gateway (also the in-process test client's entry)."""
        origin = request.header("origin")
        cors = self.project.config.cors
        if request.method == "OPTIONS" and request.header("access-control-request-method"):
            from functions.gateway.cors import preflight_response

            headers = {k.lower(): v for k, v in request.headers}
            preflight = preflight_response(headers, request.path, cors, self.routes.methods_for(request.path))
            if preflight is not None:
                return to_http_response(preflight)
        match = self.routes.match(request.method, request.path)
        route_key = match.route.route_key if match else "$default"
        event = build_event(request, route_key=route_key, path_parameters=match.path_parameters if match else None)
        if match is not None and self.authorize is not None:
            decision = await asyncio.to_thread(self.authorize, event)
            context = decision.get("context") or {}
            if not decision.get("isAuthorized"):
                context = {**context, "outcome": "deny", "error": context.get("error", "unauthorized")}
            event["requestContext"]["authorizer"] = {"lambda": context}
        result = await self.pipeline.handle(event)
        response = to_http_response(result)
        if origin and cors.origins:
            from functions.gateway.cors import cors_headers

            response.headers.extend(cors_headers(origin, cors).items())
        return response

    async def _read_request(self, scope: Scope, receive: Receive) -> HttpRequest:
        # Read at most one byte past the limit: enough for the pipeline to answer 413.
        limit = self.project.config.limits.max_body_bytes + 1
        chunks: list[bytes] = []
        size = 0
        more = True
        while more and size < limit:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)[:limit]
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers") or [])
        client = scope.get("client") or ("127.0.0.1", 0)
        return HttpRequest(
            method=scope["method"], path=scope.get("path") or "/",
            raw_query=(scope.get("query_string") or b"").decode("latin-1"),
            headers=headers, body=body, source_ip=client[0],
        )


async def _send_response(send: Send, response: HttpResponse) -> None:
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
