"""A tiny ASGI adapter for :class:`ObservabilityApi`: HTTP in, API Gateway v2 event through, HTTP out.

It converts with :mod:`functions.shared.apigw` (the one converter), so serving the
API with uvicorn exercises exactly the code the Lambda runs. The handler is
synchronous (SQLite, boto3), so it runs in a worker thread to keep the event
loop free for the dashboard's parallel requests and ``flux tail`` polling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from functions.shared.apigw import HttpRequest, HttpResponse, build_event, to_http_response
from functions.shared.errors import PayloadTooLarge, error_response
from functions.shared.ids import new_trace_id

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 1_048_576


class EventHandler(Protocol):
    def handle(self, event: dict[str, Any]) -> dict[str, Any]: ...


def asgi_app(api: EventHandler) -> ASGIApp:
    """An ASGI application serving ``api.handle`` (any object with ``handle(event) -> proxy result``)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            if len(body) > MAX_BODY_BYTES:
                await _send(send, to_http_response(error_response(
                    PayloadTooLarge(f"request body over {MAX_BODY_BYTES} bytes"), new_trace_id())), scope)
                return
            if not message.get("more_body"):
                break
        client = scope.get("client") or ("127.0.0.1", 0)
        request = HttpRequest(
            method=scope["method"],
            path=scope["path"],
            raw_query=scope.get("query_string", b"").decode("latin-1"),
            headers=tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])),
            body=bytes(body),
            source_ip=client[0],
        )
        event = build_event(request, route_key="$default")
        result = await asyncio.to_thread(api.handle, event)
        await _send(send, to_http_response(result), scope)

    return app


async def _send(send: Send, response: HttpResponse, scope: Scope) -> None:
    await send({"type": "http.response.start", "status": response.status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else response.body})
