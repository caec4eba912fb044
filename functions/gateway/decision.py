"""Reading the authorizer's verdict on the runtime side.

The authorizer (``authorizer.py``) soft-denies: it lets API Gateway invoke the
runtime and leaves its verdict in ``requestContext.authorizer.lambda``. These
helpers are what the runtime handler (and ``flux dev``) use to turn that context
into the refusal, the ``RateLimit-*`` headers, ``ctx.auth`` and the gateway
span's attributes, so the contract lives next to the code that writes it.

Values are read defensively (API Gateway may hand numbers back as numbers or
strings), and nothing here ever copies a key, a token or a cookie: the context
never held one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from functions.gateway.errors import AuthUnavailable
from functions.shared.errors import FluxError, Forbidden, RateLimited, Unauthorized

_log = logging.getLogger("flux.gateway.decision")

_ERRORS: dict[str, type[FluxError]] = {
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "rate_limited": RateLimited,
    "auth_unavailable": AuthUnavailable,
}


def authorizer_context(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """``event.requestContext.authorizer.lambda`` of a runtime event, or None when there is none."""
    request_context = event.get("requestContext")
    if not isinstance(request_context, Mapping):
        return None
    authorizer = request_context.get("authorizer")
    if not isinstance(authorizer, Mapping):
        return None
    context = authorizer.get("lambda")
    return dict(context) if isinstance(context, Mapping) else None


def is_allowed(context: Mapping[str, Any]) -> bool:
    return context.get("outcome") == "allow"


def denial(context: Mapping[str, Any]) -> FluxError | None:
    """The error to answer with (401/403/429, the latter with ``Retry-After`` and ``RateLimit-*``), or None.

    A context with an outcome other than ``allow`` but no known error is
    treated as unauthorized: an unreadable verdict must not let a request in.
    """
    if is_allowed(context):
        return None
    error_class = _ERRORS.get(str(context.get("error")), Unauthorized)
    message = str(context.get("message") or "missing or invalid credentials")
    if error_class is RateLimited:
        headers = ratelimit_headers(context)
    elif error_class is AuthUnavailable:
        headers = {"Retry-After": str(_int(context.get("retry_after")) or 5)}
    else:
        headers = {}
    return error_class(message, headers=headers)


def ratelimit_headers(context: Mapping[str, Any]) -> dict[str, str]:
    """``RateLimit-Limit/Remaining/Reset`` when a policy applied, plus ``Retry-After`` when limited."""
    headers: dict[str, str] = {}
    for header, key in (("RateLimit-Limit", "ratelimit_limit"), ("RateLimit-Remaining", "ratelimit_remaining"),
                        ("RateLimit-Reset", "ratelimit_reset")):
        value = _int(context.get(key))
        if value is not None:
            headers[header] = str(value)
    retry_after = _int(context.get("retry_after"))
    if context.get("ratelimit_outcome") == "limited" and retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return headers


def auth_for_ctx(context: Mapping[str, Any]) -> dict[str, Any]:
    """``ctx.auth`` for user code: ``{type, key_name?, scope?, subject?, claims?}``."""
    auth_type = str(context.get("auth_type") or "none")
    auth: dict[str, Any] = {"type": auth_type}
    if auth_type == "api_key":
        for key in ("key_name", "scope"):
            if context.get(key):
                auth[key] = str(context[key])
    elif auth_type == "jwt":
        if context.get("subject"):
            auth["subject"] = str(context["subject"])
        auth["claims"] = _claims(context.get("claims"))
    return auth


def gateway_span_attrs(context: Mapping[str, Any]) -> dict[str, Any]:
    """The auth and rate-limit attributes of the gateway span (DESIGN §4).

    ``auth.outcome`` is ``allow`` when the credentials passed (even if the rate
    limit then refused the request), otherwise the error code.
    """
    auth_type = str(context.get("auth_type") or "none")
    error = context.get("error")
    auth_outcome = str(error) if error in ("unauthorized", "forbidden", "auth_unavailable") else (
        "allow" if context.get("outcome") in ("allow", "deny") else "unauthorized")
    attrs: dict[str, Any] = {
        "auth.mode": auth_type,
        "auth.outcome": auth_outcome,
        "ratelimit.outcome": str(context.get("ratelimit_outcome") or "bypass"),
    }
    if auth_type == "api_key" and context.get("key_name"):
        attrs["auth.key_name"] = str(context["key_name"])
    if auth_type == "jwt" and context.get("subject"):
        attrs["auth.subject"] = str(context["subject"])
    remaining = _int(context.get("ratelimit_remaining"))
    if remaining is not None:
        attrs["ratelimit.remaining"] = remaining
    authorizer_us = _int(context.get("authorizer_us"))
    if authorizer_us is not None:
        attrs["auth.duration_us"] = authorizer_us
    return attrs


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _claims(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str) and value:
        try:
            parsed = json.loads(value)
        except ValueError:
            _log.warning("authorizer context carries unreadable claims")
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}
