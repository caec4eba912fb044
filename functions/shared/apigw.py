"""The one converter between HTTP and API Gateway HTTP API (payload 2.0) shapes.

``flux dev``, the in-process test client and the hosted adapters all turn an HTTP
request into the same event API Gateway would send, and a Lambda proxy result
back into an HTTP response, through this module, so there is exactly one gateway
code path whether a function runs on a laptop or in Lambda.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, parse_qsl

_TEXT_TYPES = ("application/json", "text/", "application/x-www-form-urlencoded", "application/xml")
# json.dumps with any non-default option builds a new encoder per call (5 of the 7 µs of a small body).
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))
compact_json = _COMPACT_JSON.encode


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    raw_query: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    # The path as sent, still percent-encoded (ASGI's raw_path). Routing splits this one on "/" and
    # decodes each parameter once, so "%2F" stays inside its segment and "%252F" becomes "%2F".
    # None (the in-process test client): ``path`` is taken as sent.
    raw_path: str | None = None

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None

    @property
    def routing_path(self) -> str:
        return self.raw_path if self.raw_path is not None else self.path


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body or b"null")


def _is_text(content_type: str | None) -> bool:
    if not content_type:
        return True
    return content_type.lower().startswith(_TEXT_TYPES)


def _fold_headers(pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, str], list[str]]:
    """Lower-case names; repeated headers are joined with commas, cookies kept apart (as API Gateway does)."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for key, value in pairs:
        lkey = key.lower()
        if lkey == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        headers[lkey] = f"{headers[lkey]},{value}" if lkey in headers else value
    return headers, cookies


def build_event(request: HttpRequest, *, route_key: str, path_parameters: dict[str, str] | None = None,
                request_id: str = "", stage: str = "$default", api_id: str = "local",
                account_id: str = "000000000000", now_ms: int | None = None) -> dict[str, Any]:
    """The API Gateway v2 event for ``request`` matched to ``route_key`` (e.g. ``"POST /orders"``)."""
    headers, cookies = _fold_headers(request.headers)
    text = _is_text(headers.get("content-type"))
    query: dict[str, str] = {}
    if request.raw_query:
        for key, value in parse_qsl(request.raw_query, keep_blank_values=True):
            query[key] = f"{query[key]},{value}" if key in query else value
    epoch_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": request.path,
        "rawQueryString": request.raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": account_id,
            "apiId": api_id,
            "domainName": headers.get("host", "127.0.0.1"),
            "domainPrefix": headers.get("host", "127.0.0.1").split(".")[0],
            "http": {
                "method": request.method.upper(),
                "path": request.path,
                "protocol": "HTTP/1.1",
                "sourceIp": request.source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": stage,
            "time": _clf_time(epoch_ms // 1000),
            "timeEpoch": epoch_ms,
        },
        "isBase64Encoded": not text,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if request.body:
        try:
            event["body"] = request.body.decode("utf-8") if text else base64.b64encode(request.body).decode()
        except UnicodeDecodeError:  # a "text" body that is not UTF-8 travels unchanged, as base64
            event["body"] = base64.b64encode(request.body).decode()
            event["isBase64Encoded"] = True
    return event


@functools.lru_cache(maxsize=4)
def _clf_time(epoch_s: int) -> str:
    """``requestContext.time`` (CLF format) of a second: formatted once per second, not per request."""
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch_s))


def event_body(event: dict[str, Any]) -> bytes:
    """The raw request body carried by an API Gateway v2 event."""
    body = event.get("body")
    if body is None:
        return b""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body)
    return body.encode("utf-8")


def request_view(event: dict[str, Any], body: bytes, *, route: str) -> dict[str, Any]:
    """``ctx.request`` for user code: the request as the client sent it.

    ``query`` is multi-valued (every name maps to a list, in order) and read from
    ``rawQueryString``, since ``queryStringParameters`` joins repeats with commas;
    ``headers`` have lower-case names (API Gateway already joined repeats);
    ``cookies`` maps each cookie name to its value (the last one wins); ``body``
    holds the raw bytes, whatever the content type. The runtime sends the worker
    everything but ``body`` (its ``length`` instead) and serves the bytes only when
    user code asks (``await ctx.request.body.bytes()``), so a function that never
    reads the raw body does not pay for a second copy of it.
    """
    http = (event.get("requestContext") or {}).get("http") or {}
    cookies: dict[str, str] = {}
    for cookie in event.get("cookies") or []:
        name, sep, value = str(cookie).partition("=")
        if sep and name.strip():
            cookies[name.strip()] = value.strip()
    return {
        "method": str(http.get("method") or ""),
        "path": str(http.get("path") or event.get("rawPath") or ""),
        "route": route,
        "params": {str(k): str(v) for k, v in (event.get("pathParameters") or {}).items()},
        "query": parse_qs(raw_query, keep_blank_values=True) if (raw_query := str(event.get("rawQueryString") or ""))
        else {},
        "headers": {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()},
        "cookies": cookies,
        "body": body,
    }


def to_http_response(result: Any) -> HttpResponse:
    """Interpret a Lambda result as API Gateway v2 does (a bare value becomes a 200 JSON body)."""
    if not isinstance(result, dict) or "statusCode" not in result:
        body = json.dumps(result).encode()
        return HttpResponse(200, [("content-type", "application/json")], body)
    headers = [(k.lower(), str(v)) for k, v in (result.get("headers") or {}).items()]
    for key, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((key.lower(), str(v)) for v in values)
    headers.extend(("set-cookie", c) for c in result.get("cookies") or [])
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode("utf-8")
    return HttpResponse(int(result["statusCode"]), headers, body)


@dataclass(frozen=True, slots=True)
class FunctionResponse:
    """A Web ``Response`` a handler returned, as the bootstrap serialised it (functions/runtime/frames.py).

    ``headers`` keeps every pair in order, so several ``Set-Cookie`` survive; ``body``
    is text, or base64 of the bytes when ``base64`` is set.
    """

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""
    base64: bool = False

    def as_json(self) -> dict[str, Any]:
        """The plain shape a caller of ``ctx.function.invoke`` receives for a callee's Response."""
        return {"status": self.status, "headers": [list(pair) for pair in self.headers], "body": self.body,
                "base64": self.base64}


def response_result(response: FunctionResponse) -> dict[str, Any]:
    """The payload 2.0 proxy result for a handler's Response.

    ``Set-Cookie`` goes to ``cookies`` (API Gateway turns each entry into its own
    header); other repeated headers are joined with ", " as HTTP allows, since a
    2.0 result has no multi-value headers. A 204 or 304 never carries a body.
    """
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in response.headers:
        lname = name.lower()
        if lname == "set-cookie":
            cookies.append(value)
        else:
            headers[lname] = f"{headers[lname]}, {value}" if lname in headers else value
    empty = response.status in (204, 304)
    result: dict[str, Any] = {
        "statusCode": response.status,
        "headers": headers,
        "body": "" if empty else response.body,
        "isBase64Encoded": response.base64 and not empty,
    }
    if cookies:
        result["cookies"] = cookies
    return result


def proxy_result(status: int, body: Any, *, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A JSON proxy result."""
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", **(headers or {})},
        "body": compact_json(body),
        "isBase64Encoded": False,
    }
