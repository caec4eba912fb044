"""API Gateway HTTP API payload format 2.0: the request event, the authorizer event, the response mapping.

Pure functions, written from the API Gateway Developer Guide ("Create AWS Lambda proxy
integrations for HTTP APIs", "Working with AWS Lambda authorizers for HTTP APIs"),
deliberately independent of Flux's own converter:

* header names lower-cased, repeated headers joined with commas; the ``cookie`` header
  moves to ``cookies`` (one entry per cookie); repeated query parameters are joined with
  commas in ``queryStringParameters``; empty ``cookies``, ``queryStringParameters``,
  ``pathParameters`` and ``body`` are left out;
* API Gateway adds ``x-forwarded-for``, ``x-forwarded-port``, ``x-forwarded-proto`` and
  ``x-amzn-trace-id``; ``requestContext`` carries ``http.method/path/protocol/sourceIp/
  userAgent``, ``requestId``, ``routeKey``, ``stage``, ``time``, ``timeEpoch`` and, behind a
  Lambda authorizer, ``authorizer.lambda`` (the simple response's ``context``);
* a body whose content type is not textual travels base64-encoded (``isBase64Encoded``);
* the response: with ``statusCode`` it is structured (``headers``, ``cookies`` → one
  ``Set-Cookie`` each, ``body`` base64-decoded when ``isBase64Encoded``; format 2.0 has no
  ``multiValueHeaders``); without it API Gateway infers 200, ``application/json`` and the
  function's output as the body. Anything it cannot map is its own 500.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

TEXT_TYPES = ("text/", "application/json", "application/javascript", "application/xml", "+json", "+xml")


@dataclass
class HttpRequest:
    method: str
    raw_path: str
    raw_query: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def gateway_error(status: int, message: str) -> HttpResponse:
    """API Gateway's own answers: ``{"message": ...}`` with JSON content type."""
    return HttpResponse(status, [("content-type", "application/json")], json.dumps({"message": message}).encode())


def request_id() -> str:
    return base64.b64encode(secrets.token_bytes(10)).decode()[:14] + "="


def is_text(content_type: str | None) -> bool:
    kind = (content_type or "").split(";")[0].strip().lower()
    return bool(kind) and any(kind.startswith(t) if t.endswith("/") else (t in kind) for t in TEXT_TYPES)


def joined_headers(request: HttpRequest, *, api_port: int, trace_id: str) -> tuple[dict[str, str], list[str]]:
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "cookie":
            cookies += [c.strip() for c in value.split(";") if c.strip()]
            continue
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    headers.setdefault("x-forwarded-for", request.source_ip)
    headers["x-forwarded-port"] = str(api_port)
    headers["x-forwarded-proto"] = "http"
    headers["x-amzn-trace-id"] = trace_id
    return headers, cookies


def query_parameters(raw_query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        params[key] = f"{params[key]},{value}" if key in params else value
    return params


@dataclass(frozen=True)
class RouteMatch:
    route_key: str
    path_parameters: dict[str, str]


def request_context(request: HttpRequest, match: RouteMatch, *, api_id: str, account: str, host: str,
                    req_id: str, now: float) -> dict[str, Any]:
    user_agent = next((v for k, v in request.headers if k.lower() == "user-agent"), "")
    return {
        "accountId": account, "apiId": api_id, "domainName": host, "domainPrefix": host.split(".")[0],
        "http": {"method": request.method, "path": request.raw_path, "protocol": request.protocol,
                 "sourceIp": request.source_ip, "userAgent": user_agent},
        "requestId": req_id, "routeKey": match.route_key, "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)), "timeEpoch": int(now * 1000),
    }


def _common(request: HttpRequest, match: RouteMatch, headers: dict[str, str], cookies: list[str]) -> dict[str, Any]:
    event: dict[str, Any] = {"routeKey": match.route_key, "rawPath": request.raw_path,
                             "rawQueryString": request.raw_query}
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    query = query_parameters(request.raw_query)
    if query:
        event["queryStringParameters"] = query
    return event


def integration_event(request: HttpRequest, match: RouteMatch, context: dict[str, Any], *, api_port: int,
                      trace_id: str, authorizer_context: dict[str, Any] | None) -> dict[str, Any]:
    headers, cookies = joined_headers(request, api_port=api_port, trace_id=trace_id)
    event = {"version": "2.0", **_common(request, match, headers, cookies)}
    ctx = dict(context)
    if authorizer_context is not None:
        ctx["authorizer"] = {"lambda": authorizer_context}
    event["requestContext"] = ctx
    if request.body:
        if is_text(headers.get("content-type")):
            event["body"] = request.body.decode("utf-8", errors="replace")
            event["isBase64Encoded"] = False
        else:
            event["body"] = base64.b64encode(request.body).decode()
            event["isBase64Encoded"] = True
    else:
        event["isBase64Encoded"] = False
    if match.path_parameters:
        event["pathParameters"] = match.path_parameters
    return event


def authorizer_event(request: HttpRequest, match: RouteMatch, context: dict[str, Any], *, api_port: int,
                     trace_id: str, route_arn: str, identity: list[str]) -> dict[str, Any]:
    headers, cookies = joined_headers(request, api_port=api_port, trace_id=trace_id)
    event = {"version": "2.0", "type": "REQUEST", "routeArn": route_arn, "identitySource": identity,
             **_common(request, match, headers, cookies), "requestContext": dict(context)}
    if match.path_parameters:
        event["pathParameters"] = match.path_parameters
    return event


def map_response(payload: bytes) -> HttpResponse:
    """The client's response for a Lambda's output (format 2.0)."""
    try:
        output = json.loads(payload)
    except ValueError:
        return gateway_error(500, "Internal Server Error")
    if not isinstance(output, dict) or "statusCode" not in output:
        return HttpResponse(200, [("content-type", "application/json")], payload)
    status = output.get("statusCode")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        return gateway_error(500, "Internal Server Error")
    headers: list[tuple[str, str]] = []
    for name, value in (output.get("headers") or {}).items():
        if isinstance(value, bool):
            value = str(value).lower()
        headers.append((str(name), str(value)))
    for cookie in output.get("cookies") or []:
        headers.append(("set-cookie", str(cookie)))
    body = output.get("body")
    if body is None:
        data = b""
    elif output.get("isBase64Encoded"):
        try:
            data = base64.b64decode(str(body), validate=True)
        except (binascii.Error, ValueError):
            return gateway_error(500, "Internal Server Error")
    else:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
    return HttpResponse(status, headers, data)
