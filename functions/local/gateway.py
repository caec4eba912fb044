"""The local gateway: an ASGI app that plays API Gateway for `flux dev`.

Like Chalice's ``local.py`` it only translates: an HTTP request is matched to a
route, turned into the API Gateway v2 event (functions/shared/apigw.py), passed
through the same authorizer code the Lambda authorizer runs, and handed to the
same :class:`~functions.gateway.pipeline.HttpPipeline` a runtime Lambda runs. The
proxy result is turned back into the HTTP response. CORS, which API Gateway
answers itself in AWS, is answered here. ``/_flux/*`` goes to the observability
API and dashboard.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Sequence
from typing import Any

from functions.gateway.pipeline import HttpPipeline
from functions.gateway.routing import RouteTable
from functions.shared.apigw import HttpRequest, HttpResponse, build_event, to_http_response
from functions.shared.asgi import ASGIApp as AsgiApp
from functions.shared.asgi import Receive, Scope, Send, read_request, send_response, serve_lifespan
from functions.shared.manifest import Project

Authorize = Callable[[dict[str, Any]], dict[str, Any]]
HARD_DENY_BODY = b'{"message":"Forbidden"}'


class LocalGateway:
    def __init__(self, project: Project, pipeline: HttpPipeline, *, authorize: Authorize | None = None,
                 flux_app: AsgiApp | None = None) -> None:
        self.pipeline = pipeline
        self.authorize = authorize
        self.flux_app = flux_app
        self.set_project(project)

    def _may_block(self, function: str) -> bool:
        spec = self.project.functions.get(function)
        jwt = self.project.config.auth.jwt
        return spec is not None and spec.auth == "jwt" and jwt is not None and bool(jwt.jwks_url)

    def set_project(self, project: Project) -> None:
        self.project = project
        self.routes = RouteTable.from_project(project)
        self.pipeline.set_project(project)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope.get("path") or "/"
        if self.flux_app is not None and (path == "/_flux" or path.startswith("/_flux/")):
            if not _loopback_host(scope):
                # Traces and logs hold user data: refuse pages that reach 127.0.0.1 through DNS rebinding.
                await send_response(send, HttpResponse(403, [("content-type", "text/plain")],
                                                       b"the Flux dashboard answers on 127.0.0.1 and localhost only"))
                return
            await self.flux_app(scope, receive, send)
            return
        # At most one byte past the limit is read: enough for the pipeline to answer 413.
        request = await read_request(scope, receive, max_body_bytes=self.project.config.limits.max_body_bytes,
                                     source_ip=self._source_ip if self.project.config.gateway.trusted_proxies
                                     else None)
        if request is None:
            return
        response = await self.handle(request)
        await send_response(send, response, head=request.method == "HEAD")

    def _source_ip(self, peer: str, raw_headers: list[tuple[bytes, bytes]]) -> str:
        forwarded = b",".join(v for k, v in raw_headers if k.lower() == b"x-forwarded-for")
        return client_ip(peer, forwarded.decode("latin-1") or None, self.project.config.gateway.trusted_proxies)

    async def handle(self, request: HttpRequest) -> HttpResponse:
        """One request through the local gateway (also the in-process test client's entry)."""
        origin = request.header("origin")
        cors = self.project.config.cors
        if request.method == "OPTIONS" and request.header("access-control-request-method"):
            from functions.gateway.cors import preflight_response

            headers = {k.lower(): v for k, v in request.headers}
            preflight = preflight_response(headers, request.path, cors,
                                           self.routes.methods_for(request.routing_path))
            if preflight is not None:
                return to_http_response(preflight)
        match = self.routes.match(request.method, request.routing_path)
        route_key = match.route.route_key if match else "$default"
        event = build_event(request, route_key=route_key, path_parameters=match.path_parameters if match else None)
        if match is not None and self.authorize is not None:
            # Deciding takes microseconds (a thread hop costs more), except verifying a JWT against a
            # JWKS URL, which may fetch keys over the network: only that runs off the event loop.
            if self._may_block(match.route.function):
                decision = await asyncio.to_thread(self.authorize, event)
            else:
                decision = self.authorize(event)
            if not decision.get("isAuthorized"):
                # What API Gateway answers for a hard deny (Flux's authorizer only soft-denies; see authorizer.py).
                return HttpResponse(403, [("content-type", "application/json")], HARD_DENY_BODY)
            event["requestContext"]["authorizer"] = {"lambda": decision.get("context") or {}}
        result = await self.pipeline.handle(event)
        response = to_http_response(result)
        if origin and cors.origins:
            from functions.gateway.cors import cors_headers

            response.headers.extend(cors_headers(origin, cors).items())
        return response


def client_ip(peer: str, forwarded_for: str | None, trusted_proxies: Sequence[str]) -> str:
    """The address rate limits and logs see: the socket peer, unless that peer is a trusted proxy.

    Behind trusted proxies, X-Forwarded-For is read from the right (each proxy appends the address
    it received from) and the first address that is not itself a trusted proxy is the client.
    Without ``gateway.trusted_proxies`` the header is ignored: any local client could name any IP.
    """
    if not trusted_proxies or not forwarded_for:
        return peer
    networks = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]

    def trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip.version == n.version and ip in n for n in networks)

    if not trusted(peer):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed chain is not evidence of anything
        if not trusted(hop):
            return hop
    return peer


_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})


def _loopback_host(scope: Scope) -> bool:
    for key, value in scope.get("headers") or []:
        if key == b"host":
            name = value.decode("latin-1").strip().lower()
            host = name.rsplit(":", 1)[0] if not name.endswith("]") else name
            return host in _LOOPBACK_NAMES
    return True  # HTTP/1.0 without Host: only a local client does that
