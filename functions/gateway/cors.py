"""CORS from flux.json (``cors.origins``, ``cors.headers``, ``cors.max_age``) for ``flux dev``.

In AWS the HTTP API's own CORS configuration (generated from the same
settings) answers preflights and decorates responses; locally the dev server
calls these two functions so browsers see the same behaviour.

Choices:

* Origins match exactly (scheme, host and port, case-insensitively), or ``"*"``
  allows any origin. Credentials (cookies) are never allowed cross-origin, so
  ``"*"`` is answered literally as ``*``.
* A preflight from an origin that is not allowed gets a 204 *without* any
  ``Access-Control-Allow-*`` header (what API Gateway does): the browser then
  blocks the real request, and a non-browser client learns nothing it could not
  learn from a plain request. A 403 would add nothing but a second code path.
* Every CORS answer carries ``Vary: Origin`` so a shared cache never serves one
  origin's headers to another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from functions.shared.manifest import Cors


#: Response headers a browser script may read cross-origin (the rest of the CORS-safelisted ones are implicit).
EXPOSE_HEADERS = ("x-request-id", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After")


#: Request headers always allowed: README invites browsers to send them, whatever flux.json lists.
TRACE_HEADERS = ("x-request-id", "traceparent")


def allowed_headers(configured: Sequence[str]) -> list[str]:
    """flux.json's ``cors.headers`` plus :data:`TRACE_HEADERS`, each once (case-insensitively); the stack's
    ``AllowHeaders`` and ``flux dev``'s preflight both use this list."""
    seen: dict[str, str] = {}
    for header in (*configured, *TRACE_HEADERS):
        seen.setdefault(header.lower(), header)
    return list(seen.values())


def origin_allowed(origin: str | None, cors: Cors) -> bool:
    if not origin:
        return False
    wanted = origin.strip().rstrip("/").lower()
    return any(allowed == "*" or allowed.rstrip("/").lower() == wanted for allowed in cors.origins)


def _allow_origin_value(origin: str, cors: Cors) -> str:
    return "*" if "*" in cors.origins else origin


def is_preflight(method: str, request_headers: Mapping[str, str]) -> bool:
    lowered = {k.lower() for k in request_headers}
    return method.upper() == "OPTIONS" and "origin" in lowered and "access-control-request-method" in lowered


def preflight_response(request_headers: Mapping[str, str], path: str, cors: Cors,
                       allowed_methods: list[str]) -> dict[str, Any] | None:
    """The 204 answer to a CORS preflight for ``path``, or None if this is not a preflight to answer.

    None means: the request lacks ``Origin`` or ``Access-Control-Request-Method``
    (a plain OPTIONS), or no function is routed at ``path`` (``allowed_methods``
    empty) — the caller answers those as it answers any other request (404).
    """
    headers = {k.lower(): v for k, v in request_headers.items()}
    origin = headers.get("origin")
    if not origin or "access-control-request-method" not in headers or not allowed_methods:
        return None
    response_headers = {"Vary": "Origin"}
    if origin_allowed(origin, cors):
        response_headers.update({
            "Access-Control-Allow-Origin": _allow_origin_value(origin, cors),
            "Access-Control-Allow-Methods": ", ".join(sorted({m.upper() for m in allowed_methods} | {"OPTIONS"})),
            "Access-Control-Allow-Headers": ", ".join(allowed_headers(cors.headers)),
            "Access-Control-Max-Age": str(cors.max_age),
        })
    return {"statusCode": 204, "headers": response_headers, "body": "", "isBase64Encoded": False}


def cors_headers(origin: str | None, cors: Cors) -> dict[str, str]:
    """Headers to add to a normal (non-preflight) response.

    ``Access-Control-Allow-Origin`` (and the exposed headers) only for an
    allowed origin; ``Vary: Origin`` whenever CORS is configured, because the
    answer depends on the origin.
    """
    if not cors.origins:
        return {}
    headers = {"Vary": "Origin"}
    if origin is not None and origin_allowed(origin, cors):
        headers["Access-Control-Allow-Origin"] = _allow_origin_value(origin, cors)
        headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSE_HEADERS)
    return headers
