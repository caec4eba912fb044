"""The ASGI side of the one HTTP converter: read a request into :class:`HttpRequest`, write an :class:`HttpResponse`.

The local gateway and the observability adapter both serve ASGI and both hand
requests to code that expects API Gateway events; this module is the part they
share, so there is one way bodies are bounded, headers decoded and responses sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from functions.shared.apigw import HttpRequest, HttpResponse

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def read_request(scope: Scope, receive: Receive, *, max_body_bytes: int,
                       source_ip: Callable[[str, list[tuple[bytes, bytes]]], str] | None = None) -> HttpRequest | None:
    """The request, with at most ``max_body_bytes + 1`` bytes of body read (enough to tell it is too large).

    ``raw_path`` is ASGI's, still percent-encoded, for routing. ``source_ip`` (peer, raw headers) -> the
    client address, when the caller must look past trusted proxies; otherwise the socket peer is it.
    None when the client went away before the body arrived.
    """
    limit = max_body_bytes + 1
    message = await receive()
    if message["type"] == "http.disconnect":
        return None
    body: bytes = message.get("body", b"")
    if message.get("more_body", False):  # a streamed body: gather chunks up to the limit
        chunks = [body]
        size = len(body)
        more = True
        while more and size < limit:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
    raw_headers = scope.get("headers") or []
    client = scope.get("client")
    peer = client[0] if client else "127.0.0.1"
    raw_path = scope.get("raw_path")
    return HttpRequest(
        scope["method"], scope.get("path") or "/", (scope.get("query_string") or b"").decode("latin-1"),
        tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers),
        body[:limit] if len(body) > limit else body,
        source_ip(peer, raw_headers) if source_ip is not None else peer,
        raw_path.decode("latin-1") if isinstance(raw_path, bytes) else None,
    )


async def send_response(send: Send, response: HttpResponse, *, head: bool = False) -> None:
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers
               if k.lower() != "content-length"]
    headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else response.body})


async def serve_lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge startup and shutdown: the owners of these apps manage their own resources."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
