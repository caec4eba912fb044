"""The authorizer's verdict: one typed value written by the authorizer and read once by the pipeline.

The authorizer soft-denies (see ``authorizer.py``): API Gateway always invokes
the runtime and hands it the verdict in ``requestContext.authorizer.lambda``.
A simple-response context may only hold strings, numbers and booleans (API
Gateway drops anything else), so :meth:`Verdict.to_context` flattens the
verdict (JWT claims travel as one JSON string) and :meth:`Verdict.from_event`
parses it back in one strict pass. Anything malformed there (an unknown
outcome, error or auth type, a number that is not one, claims that are not a
JSON object) becomes a 401 refusal: an unreadable verdict must never let a
request in. Numbers are accepted as decimal strings too, because API Gateway
may hand them back that way.

The verdict never holds a key, a token or a cookie, so nothing read from it
can leak one into a span or a log.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple, get_args

from functions.gateway.errors import AuthUnavailable
from functions.shared.errors import FluxError, Forbidden, RateLimited, Unauthorized

_log = logging.getLogger("flux.gateway.verdict")

DenyCode = Literal["unauthorized", "forbidden", "rate_limited", "auth_unavailable"]
AuthType = Literal["none", "api_key", "jwt"]
RateOutcome = Literal["allowed", "limited", "bypass", "store_error", "skipped"]

UNAUTHORIZED_MESSAGE = "missing or invalid credentials"
DEFAULT_RETRY_AFTER_S = 5

_ERRORS: dict[str, type[FluxError]] = {
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "rate_limited": RateLimited,
    "auth_unavailable": AuthUnavailable,
}
_INT_FIELDS = ("ratelimit_limit", "ratelimit_remaining", "ratelimit_reset", "retry_after", "authorizer_us")
_STR_FIELDS = ("message", "function", "key_name", "scope", "subject")
_DENY_CODES = frozenset(get_args(DenyCode))
_AUTH_TYPES = frozenset(get_args(AuthType))
_RATE_OUTCOMES = frozenset(get_args(RateOutcome))
_DECIMAL = re.compile(r"-?[0-9]{1,18}")


class MalformedVerdict(ValueError):
    """The authorizer context cannot be read as a verdict."""


class Verdict(NamedTuple):
    """What the authorizer decided about one request, and who the caller is.

    ``error``/``message`` are set exactly when ``allowed`` is false;
    ``key_name``/``scope`` only for an accepted API key, ``subject``/``claims``
    only for a verified JWT.

    Immutable, changed with ``_replace``. A named tuple rather than a frozen dataclass because
    one is built, changed and parsed back on every request: a frozen dataclass of these 15
    fields costs 5 µs to build and 10 µs per ``dataclasses.replace``, a named tuple under 1 µs.
    """

    allowed: bool
    error: DenyCode | None = None
    message: str | None = None
    function: str | None = None
    auth_type: AuthType = "none"
    key_name: str | None = None
    scope: str | None = None
    subject: str | None = None
    claims: Mapping[str, Any] | None = None
    ratelimit_outcome: RateOutcome = "bypass"
    ratelimit_limit: int | None = None
    ratelimit_remaining: int | None = None
    ratelimit_reset: int | None = None
    retry_after: int | None = None
    authorizer_us: int | None = None

    @classmethod
    def refused(cls, error: DenyCode, message: str, **fields: Any) -> Verdict:
        """A deny verdict; the rate limit counts as skipped unless the caller says otherwise."""
        return cls(allowed=False, error=error, message=message, **{"ratelimit_outcome": "skipped", **fields})

    # -- the wire form -------------------------------------------------------------------------------

    def to_context(self) -> dict[str, str | int | bool]:
        """The flat simple-response context (strings and integers only; unset fields are left out)."""
        context: dict[str, str | int | bool] = {"outcome": "allow" if self.allowed else "deny",
                                                "auth_type": self.auth_type,
                                                "ratelimit_outcome": self.ratelimit_outcome}
        for name in ("error", *_STR_FIELDS, *_INT_FIELDS):
            value = getattr(self, name)
            if value is not None:
                context[name] = value
        if self.claims is not None:
            context["claims"] = json.dumps(dict(self.claims), separators=(",", ":"), default=str)
        return context

    def response(self) -> dict[str, Any]:
        """The authorizer's simple response: always authorized (soft deny), the verdict in the context."""
        return {"isAuthorized": True, "context": self.to_context()}

    @classmethod
    def from_context(cls, context: Any) -> Verdict:
        """Parse a context strictly; anything malformed is a 401 refusal (logged, never raised)."""
        try:
            return _parse(context)
        except MalformedVerdict as exc:
            _log.warning("authorizer context is malformed (%s); refusing", exc)
            return cls.refused("unauthorized", UNAUTHORIZED_MESSAGE)

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Verdict | None:
        """The verdict in ``event.requestContext.authorizer.lambda``; None when no authorizer ran at all."""
        request_context = event.get("requestContext")
        authorizer = request_context.get("authorizer") if isinstance(request_context, Mapping) else None
        if not isinstance(authorizer, Mapping) or "lambda" not in authorizer:
            return None
        return cls.from_context(authorizer["lambda"])

    # -- what the pipeline reads ---------------------------------------------------------------------

    def denial(self) -> FluxError | None:
        """The error to answer with (401/403/429/503 with their headers), or None when allowed."""
        if self.allowed:
            return None
        error_class = _ERRORS[self.error or "unauthorized"]
        if error_class is RateLimited:
            headers = self.ratelimit_headers()
        elif error_class is AuthUnavailable:
            headers = {"Retry-After": str(self.retry_after or DEFAULT_RETRY_AFTER_S)}
        else:
            headers = {}
        return error_class(self.message or UNAUTHORIZED_MESSAGE, headers=headers)

    def ratelimit_headers(self) -> dict[str, str]:
        """``RateLimit-Limit/Remaining/Reset`` when a policy applied, plus ``Retry-After`` when limited."""
        headers = {header: str(value) for header, value in (
            ("RateLimit-Limit", self.ratelimit_limit), ("RateLimit-Remaining", self.ratelimit_remaining),
            ("RateLimit-Reset", self.ratelimit_reset)) if value is not None}
        if self.ratelimit_outcome == "limited" and self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers

    def auth(self) -> dict[str, Any]:
        """``ctx.auth`` for user code: ``{type, key_name?, scope?, subject?, claims?}``."""
        auth: dict[str, Any] = {"type": self.auth_type}
        if self.auth_type == "api_key":
            auth.update({k: v for k, v in (("key_name", self.key_name), ("scope", self.scope)) if v})
        elif self.auth_type == "jwt":
            if self.subject:
                auth["subject"] = self.subject
            auth["claims"] = dict(self.claims or {})
        return auth

    def span_attrs(self) -> dict[str, Any]:
        """The auth and rate-limit attributes of the gateway span (DESIGN §4).

        ``auth.outcome`` is ``allow`` when the credentials passed (even if the
        rate limit then refused the request), otherwise the error code.
        """
        outcome = self.error if self.error in ("unauthorized", "forbidden", "auth_unavailable") else "allow"
        attrs: dict[str, Any] = {"auth.mode": self.auth_type, "auth.outcome": outcome,
                                 "ratelimit.outcome": self.ratelimit_outcome}
        if self.auth_type == "api_key" and self.key_name:
            attrs["auth.key_name"] = self.key_name
        if self.auth_type == "jwt" and self.subject:
            attrs["auth.subject"] = self.subject
        if self.ratelimit_remaining is not None:
            attrs["ratelimit.remaining"] = self.ratelimit_remaining
        if self.authorizer_us is not None:
            attrs["auth.duration_us"] = self.authorizer_us
        return attrs


def _parse(context: Any) -> Verdict:
    if not isinstance(context, Mapping):
        raise MalformedVerdict("context is not an object")
    outcome = context.get("outcome")
    if outcome not in ("allow", "deny"):
        raise MalformedVerdict(f"outcome {outcome!r}")
    allowed = outcome == "allow"
    error = context.get("error")
    if allowed and error is not None:
        raise MalformedVerdict("an allow verdict carries an error")
    if not allowed and not (isinstance(error, str) and error in _DENY_CODES):
        raise MalformedVerdict(f"error {error!r}")
    auth_type = context.get("auth_type", "none")
    if not (isinstance(auth_type, str) and auth_type in _AUTH_TYPES):
        raise MalformedVerdict(f"auth_type {auth_type!r}")
    ratelimit_outcome = context.get("ratelimit_outcome", "bypass")
    if not (isinstance(ratelimit_outcome, str) and ratelimit_outcome in _RATE_OUTCOMES):
        raise MalformedVerdict(f"ratelimit_outcome {ratelimit_outcome!r}")
    return Verdict(allowed, error, _str(context, "message"), _str(context, "function"), auth_type,
                   _str(context, "key_name"), _str(context, "scope"), _str(context, "subject"),
                   _claims(context.get("claims")), ratelimit_outcome, _int(context, "ratelimit_limit"),
                   _int(context, "ratelimit_remaining"), _int(context, "ratelimit_reset"),
                   _int(context, "retry_after"), _int(context, "authorizer_us"))


def _str(context: Mapping[str, Any], name: str) -> str | None:
    value = context.get(name)
    if value is not None and not isinstance(value, str):
        raise MalformedVerdict(f"{name} is not a string")
    return value


def _int(context: Mapping[str, Any], name: str) -> int | None:
    value = context.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        raise MalformedVerdict(f"{name} is a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return int(value)
    raise MalformedVerdict(f"{name} is not an integer")


def _claims(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return dict(value)
    if not isinstance(value, str):
        raise MalformedVerdict("claims is neither JSON text nor an object")
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise MalformedVerdict("claims is not JSON") from exc
    if not isinstance(parsed, dict):
        raise MalformedVerdict("claims is not a JSON object")
    return parsed
