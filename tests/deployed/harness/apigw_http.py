"""An API Gateway HTTP API built from the template's ``AWS::ApiGatewayV2::*`` resources, served on 127.0.0.1.

Behaviour modelled from the API Gateway Developer Guide (HTTP APIs):

* **Routes** (``RouteKey`` ``METHOD /path``, ``ANY``, ``$default``): the most specific
  match wins — a route without path variables, then one with variables (more literal
  segments first), then greedy ``{proxy+}``; an exact method before ``ANY``; ``$default``
  last; nothing: 404 ``{"message":"Not Found"}``.
* **Lambda REQUEST authorizers** (``AuthorizerPayloadFormatVersion`` 2.0, simple responses):
  every identity source must be present and non-empty, otherwise 401
  ``{"message":"Unauthorized"}`` and the authorizer is not invoked; ``isAuthorized`` false
  is 403 ``{"message":"Forbidden"}``; an authorizer that fails or answers something else is
  500. With a TTL and identity sources the decision is cached per identity-source values.
* **Integrations** (``AWS_PROXY`` to Lambda, payload 2.0): at most ``TimeoutInMillis``
  (≤ 30 s), over it 503 ``{"message":"Service Unavailable"}`` while the Lambda keeps
  running; a function error or an unmappable output is 500
  ``{"message":"Internal Server Error"}``.
* **CORS** (``CorsConfiguration``): preflight ``OPTIONS`` requests are answered by the API
  itself (204) with the allowed origin, methods, headers and max age when the origin is
  allowed; other responses to an allowed origin get ``access-control-allow-origin`` and
  ``-expose-headers`` (CORS headers from the integration are replaced).
* **Stage throttling** (``DefaultRouteSettings``): a token bucket of ``ThrottlingRateLimit``
  per second and ``ThrottlingBurstLimit``; over it 429 ``{"message":"Too Many Requests"}``.
  A route with its own ``RouteSettings`` entry (keyed by route key) has its own bucket
  instead of the stage default's, as route-level limits override the stage's for that route.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.deployed.harness import apigw_event as ev
from tests.deployed.harness.lambda_service import LambdaError, LambdaService
from tests.deployed.harness.runtime_api import QuietServer
from tests.deployed.harness.template import Stack

MAX_INTEGRATION_MS = 30_000
MAX_BODY_BYTES = 10 * 1024 * 1024
_FUNCTION_ARN = re.compile(r"(arn:aws:lambda:[^/]+:function:[^/:]+)")


@dataclass(frozen=True)
class Authorizer:
    logical_id: str
    function: str
    identity_sources: tuple[str, ...]
    ttl_s: int
    simple: bool


@dataclass(frozen=True)
class Route:
    key: str
    method: str        # "ANY" or a method; "" for $default
    segments: tuple[str, ...]
    function: str
    timeout_ms: int
    authorizer: Authorizer | None

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.key == "$default":
            return {}
        if self.method not in ("ANY", method):
            return None
        parts = path.strip("/").split("/") if path.strip("/") else []
        params: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            if segment.startswith("{") and segment.endswith("+}"):
                rest = parts[index:]
                if not rest:
                    return None
                params[segment[1:-2]] = "/".join(rest)
                return params
            if index >= len(parts):
                return None
            if segment.startswith("{") and segment.endswith("}"):
                if not parts[index]:
                    return None
                params[segment[1:-1]] = _unquote(parts[index])
            elif segment != parts[index]:
                return None
        return params if len(parts) == len(self.segments) else None

    def rank(self) -> tuple[int, int, int, int]:
        greedy = any(s.endswith("+}") for s in self.segments)
        literal = sum(not s.startswith("{") for s in self.segments)
        default = self.key == "$default"
        return (0 if default else 1, 0 if greedy else 1, literal, 1 if self.method != "ANY" else 0)


def _unquote(value: str) -> str:
    from urllib.parse import unquote

    return unquote(value)


def _function_of(uri: Any) -> str:
    text = str(uri)
    found = _FUNCTION_ARN.search(text)
    return found.group(1) if found else text


@dataclass
class HttpApiModel:
    api_id: str
    routes: list[Route]
    cors: dict[str, Any] | None
    rate: float | None
    burst: int | None
    route_limits: dict[str, tuple[float, int]] = field(default_factory=dict)

    @classmethod
    def from_stack(cls, stack: Stack, api_logical_id: str) -> HttpApiModel:
        api = stack.resources[api_logical_id]["Properties"]
        authorizers: dict[str, Authorizer] = {}
        for lid, res in stack.of_type("AWS::ApiGatewayV2::Authorizer").items():
            props = res["Properties"]
            if props.get("AuthorizerType") != "REQUEST":
                raise NotImplementedError(f"{lid}: only REQUEST (Lambda) authorizers are emulated")
            authorizers[lid] = Authorizer(lid, _function_of(stack.resolve(props["AuthorizerUri"])),
                                          tuple(props.get("IdentitySource") or ()),
                                          int(props.get("AuthorizerResultTtlInSeconds", 300)),
                                          bool(props.get("EnableSimpleResponses")))
        integrations = {lid: res["Properties"] for lid, res in stack.of_type("AWS::ApiGatewayV2::Integration").items()}
        routes: list[Route] = []
        for res in stack.of_type("AWS::ApiGatewayV2::Route").values():
            props = res["Properties"]
            target = props["Target"]["Fn::Join"][1][1]["Ref"]
            integration = integrations[target]
            if integration.get("IntegrationType") != "AWS_PROXY" or integration.get("PayloadFormatVersion") != "2.0":
                raise NotImplementedError(f"{target}: only AWS_PROXY payload 2.0 integrations are emulated")
            key = props["RouteKey"]
            method, path = ("", "") if key == "$default" else key.split(" ", 1)
            authorizer = None
            if props.get("AuthorizationType") == "CUSTOM":
                authorizer = authorizers[props["AuthorizerId"]["Ref"]]
            elif props.get("AuthorizationType") not in (None, "NONE"):
                raise NotImplementedError(f"route {key}: authorization {props['AuthorizationType']} is not emulated")
            routes.append(Route(key, method, tuple(s for s in path.strip("/").split("/") if s),
                                _function_of(stack.resolve(integration["IntegrationUri"])),
                                min(int(integration.get("TimeoutInMillis", MAX_INTEGRATION_MS)), MAX_INTEGRATION_MS),
                                authorizer))
        stage = next(iter(stack.of_type("AWS::ApiGatewayV2::Stage").values()), {}).get("Properties", {})
        settings = stage.get("DefaultRouteSettings", {})
        route_limits = {key: (float(value["ThrottlingRateLimit"]), int(value["ThrottlingBurstLimit"]))
                        for key, value in (stage.get("RouteSettings") or {}).items()
                        if "ThrottlingRateLimit" in value and "ThrottlingBurstLimit" in value}
        return cls(api_id=api_logical_id.lower()[:10], routes=routes, cors=api.get("CorsConfiguration"),
                   rate=settings.get("ThrottlingRateLimit"), burst=settings.get("ThrottlingBurstLimit"),
                   route_limits=route_limits)

    def route_for(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        candidates = [(r, p) for r in self.routes if (p := r.match(method, path)) is not None]
        if not candidates:
            return None
        return max(candidates, key=lambda rp: rp[0].rank())


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, float(burst), time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True


class HttpApi:
    """The emulated API endpoint (``ApiEndpoint``), plain HTTP on 127.0.0.1."""

    def __init__(self, model: HttpApiModel, lambdas: LambdaService, *, account: str, region: str) -> None:
        self.model, self.lambdas, self.account, self.region = model, lambdas, account, region
        self._cache: dict[tuple[str, tuple[str, ...]], tuple[float, dict[str, Any] | None, bool]] = {}
        self._cache_lock = threading.Lock()
        self.authorizer_invocations = 0
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="apigw-integration")
        self._bucket = TokenBucket(model.rate, int(model.burst)) if model.rate and model.burst else None
        self._route_buckets = {key: TokenBucket(rate, burst) for key, (rate, burst) in model.route_limits.items()}
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # as AWS's endpoints: no delayed-ACK stall between headers and body

            def log_message(self, format: str, *args: object) -> None:
                return

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                request = ev.HttpRequest(self.command, path, query, list(self.headers.items()), body,
                                         source_ip=self.client_address[0], protocol=self.request_version)
                response = api.handle(request)
                self.send_response(response.status)
                names = {k.lower() for k, _ in response.headers}
                for key, value in response.headers:
                    if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(key, value)
                if "date" not in names:
                    self.send_header("Date", self.date_time_string())
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)

            def send_response(self, code: int, message: str | None = None) -> None:  # no Server header
                self.log_request(code)
                self.send_response_only(code, message)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve

        self._server = QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="http-api", daemon=True).start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- one request -------------------------------------------------------------------------------

    def handle(self, request: ev.HttpRequest) -> ev.HttpResponse:
        req_id = ev.request_id()
        response = self._handle(request, req_id)
        response.headers.append(("apigw-requestid", req_id))
        return self._with_cors(request, response)

    def _header(self, request: ev.HttpRequest, name: str) -> str | None:
        values = [v for k, v in request.headers if k.lower() == name]
        return ",".join(values) if values else None

    def _handle(self, request: ev.HttpRequest, req_id: str) -> ev.HttpResponse:
        origin = self._header(request, "origin")
        preflight = (self.model.cors is not None and request.method == "OPTIONS" and origin
                     and self._header(request, "access-control-request-method"))
        # A preflight is answered by the API itself, not by a route: it counts against the stage only.
        found = None if preflight else self.model.route_for(request.method, request.raw_path)
        bucket = self._route_buckets.get(found[0].key, self._bucket) if found is not None else self._bucket
        if bucket is not None and not bucket.take():
            return ev.gateway_error(429, "Too Many Requests")
        if len(request.body) > MAX_BODY_BYTES:
            return ev.gateway_error(413, "Request Entity Too Large")
        if preflight and origin:
            return self._preflight(origin)
        if found is None:
            return ev.gateway_error(404, "Not Found")
        route, params = found
        match = ev.RouteMatch(route.key, params)
        now = time.time()
        host = self._header(request, "host") or f"127.0.0.1:{self.port}"
        context = ev.request_context(request, match, api_id=self.model.api_id, account=self.account, host=host,
                                     req_id=req_id, now=now)
        trace_id = f"Root=1-{int(now):08x}-{uuid.uuid4().hex[:24]}"
        authorizer_context = None
        if route.authorizer is not None:
            decision = self._authorize(route, request, match, context, trace_id)
            if isinstance(decision, ev.HttpResponse):
                return decision
            authorizer_context = decision
        event = ev.integration_event(request, match, context, api_port=self.port, trace_id=trace_id,
                                     authorizer_context=authorizer_context)
        future = self._pool.submit(self.lambdas.invoke, route.function, json.dumps(event).encode())
        try:
            result = future.result(timeout=route.timeout_ms / 1000)
        except concurrent.futures.TimeoutError:
            return ev.gateway_error(503, "Service Unavailable")
        except LambdaError as exc:
            return ev.gateway_error(429 if exc.status == 429 else 500,
                                    "Too Many Requests" if exc.status == 429 else "Internal Server Error")
        if result.function_error:
            return ev.gateway_error(500, "Internal Server Error")
        return ev.map_response(result.payload)

    def _identity(self, source: str, request: ev.HttpRequest, match: ev.RouteMatch) -> str | None:
        if source.startswith("$request.header."):
            return self._header(request, source.removeprefix("$request.header.").lower())
        if source.startswith("$request.querystring."):
            return ev.query_parameters(request.raw_query).get(source.removeprefix("$request.querystring."))
        if source == "$context.routeKey":
            return match.route_key
        if source == "$context.httpMethod":
            return request.method
        raise NotImplementedError(f"identity source {source} is not emulated")

    def _authorize(self, route: Route, request: ev.HttpRequest, match: ev.RouteMatch, context: dict[str, Any],
                   trace_id: str) -> dict[str, Any] | ev.HttpResponse:
        authorizer = route.authorizer
        assert authorizer is not None
        identity = [self._identity(s, request, match) for s in authorizer.identity_sources]
        if any(value is None or value == "" for value in identity):
            return ev.gateway_error(401, "Unauthorized")
        values = tuple(str(v) for v in identity)
        key = (authorizer.logical_id, values)
        cacheable = authorizer.ttl_s > 0 and bool(authorizer.identity_sources)
        if cacheable:
            with self._cache_lock:
                cached = self._cache.get(key)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1] if cached[2] else ev.gateway_error(403, "Forbidden")
        route_arn = (f"arn:aws:execute-api:{self.region}:{self.account}:{self.model.api_id}/$default/"
                     f"{request.method}{request.raw_path}")
        event = ev.authorizer_event(request, match, context, api_port=self.port, trace_id=trace_id,
                                    route_arn=route_arn, identity=list(values))
        self.authorizer_invocations += 1
        try:
            result = self.lambdas.invoke(authorizer.function, json.dumps(event).encode())
        except LambdaError:
            return ev.gateway_error(500, "Internal Server Error")
        if result.function_error:
            return ev.gateway_error(500, "Internal Server Error")
        try:
            output = result.json()
        except ValueError:
            return ev.gateway_error(500, "Internal Server Error")
        if not authorizer.simple or not isinstance(output, dict) or not isinstance(output.get("isAuthorized"), bool):
            return ev.gateway_error(500, "Internal Server Error")
        allowed = output["isAuthorized"]
        context_out = output.get("context") or {}
        if cacheable:
            with self._cache_lock:
                self._cache[key] = (time.monotonic() + authorizer.ttl_s, context_out, allowed)
        return context_out if allowed else ev.gateway_error(403, "Forbidden")

    # -- CORS --------------------------------------------------------------------------------------

    def _origin_allowed(self, origin: str) -> bool:
        allowed = (self.model.cors or {}).get("AllowOrigins") or []
        return "*" in allowed or origin in allowed

    def _preflight(self, origin: str) -> ev.HttpResponse:
        cors = self.model.cors or {}
        if not self._origin_allowed(origin):
            return ev.HttpResponse(204, [])
        headers = [("access-control-allow-origin", origin if "*" not in cors.get("AllowOrigins", []) else "*")]
        if cors.get("AllowMethods"):
            headers.append(("access-control-allow-methods", ",".join(cors["AllowMethods"])))
        if cors.get("AllowHeaders"):
            headers.append(("access-control-allow-headers", ",".join(cors["AllowHeaders"])))
        if cors.get("MaxAge") is not None:
            headers.append(("access-control-max-age", str(cors["MaxAge"])))
        if cors.get("AllowCredentials"):
            headers.append(("access-control-allow-credentials", "true"))
        return ev.HttpResponse(204, headers)

    def _with_cors(self, request: ev.HttpRequest, response: ev.HttpResponse) -> ev.HttpResponse:
        cors = self.model.cors
        origin = self._header(request, "origin")
        if cors is None or not origin:
            return response
        if any(k.lower() == "access-control-allow-origin" for k, _ in response.headers) and request.method == "OPTIONS":
            return response  # our own preflight answer
        response.headers = [(k, v) for k, v in response.headers if not k.lower().startswith("access-control-")]
        if self._origin_allowed(origin):
            response.headers.append(("access-control-allow-origin",
                                     "*" if "*" in cors.get("AllowOrigins", []) else origin))
            if cors.get("ExposeHeaders"):
                response.headers.append(("access-control-expose-headers", ",".join(cors["ExposeHeaders"])))
            if cors.get("AllowCredentials"):
                response.headers.append(("access-control-allow-credentials", "true"))
        return response

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)
