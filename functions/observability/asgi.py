"""A tiny ASGI adapter for :class:`ObservabilityApi`: HTTP in, API Gateway v2 event through, HTTP out.

It converts with :mod:`functions.shared.apigw` (the one converter), so serving the
API with uvicorn exercises exactly the code the Lambda runs. The handler is
synchronous (SQLite, boto3), so it runs in a worker thread to keep the event
loop free for the dashboard's parallel requests and ``flux tail`` polling.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from functions.shared.apigw import build_event, to_http_response
from functions.shared.asgi import ASGIApp, Receive, Scope, Send, read_request, send_response, serve_lifespan
from functions.shared.errors import PayloadTooLarge, error_response
from functions.shared.ids import new_trace_id

MAX_BODY_BYTES = 1_048_576


class EventHandler(Protocol):
    def handle(self, event: dict[str, Any]) -> dict[str, Any]: ...


def asgi_app(api: EventHandler) -> ASGIApp:
    """An ASGI application serving ``api.handle`` (any object with ``handle(event) -> proxy result``)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = await read_request(scope, receive, max_body_bytes=MAX_BODY_BYTES)
        if request is None:
            return
        head = scope["method"] == "HEAD"
        if len(request.body) > MAX_BODY_BYTES:
            too_large = PayloadTooLarge(f"request body over {MAX_BODY_BYTES} bytes")
            await send_response(send, to_http_response(error_response(too_large, new_trace_id())), head=head)
            return
        result = await asyncio.to_thread(api.handle, build_event(request, route_key="$default"))
        await send_response(send, to_http_response(result), head=head)

    return app
