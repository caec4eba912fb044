"""The Lambda authorizer: authentication and rate limiting for every function route.

In AWS, API Gateway (HTTP API) calls :meth:`Authorizer.authorize` as a REQUEST
authorizer with payload format 2.0 and simple responses; ``flux dev`` builds
the same event with :mod:`functions.shared.apigw` and calls the same method.

Soft deny only. An HTTP API cannot customise what it answers when an authorizer
says ``isAuthorized: false`` (always a bare 403 ``{"message": "Forbidden"}``
without ``x-request-id``), and it cannot answer 401, 429 or 503 from an
authorizer at all. Flux promises the standard error body (DESIGN §4), so the
authorizer always answers ``isAuthorized: true`` and puts its verdict in the
context; the runtime handler reads it before any user code runs and refuses
the request with the right status and body. The verdict is one typed value,
:class:`functions.gateway.verdict.Verdict`: written here, flattened into the
context, parsed once by the pipeline. The runtime is the only integration behind these
routes, and it refuses any outcome other than ``allow`` (and a protected route
reached with no verdict at all), so nothing can skip that check: failing closed
does not need a hard deny. That covers the cases a hard deny used to: an event
we cannot read and a route key that is not a Flux function (401), and internal
failures such as the key store being down, JWT required but not configured, or
a bug (503 ``auth_unavailable``). ``flux dev`` therefore answers exactly what
AWS answers; should a hard deny ever reach it, it answers what API Gateway
would (a bare 403).

Caching. Results are never cached (TTL 0, no identity sources): limits are
counted per request here, API keys may arrive in ``x-api-key`` *or*
``Authorization: Bearer`` (an identity source list requires *all* of its
headers, so no one list covers both), and API Gateway answers a request that
lacks an identity source with its own bare 401 before we can explain it. The
cost is one authorizer call per request; the gain is that a revoked key or an
expired token stops working at once.

Context contract (``Verdict.to_context``; every value a str or an int, API Gateway drops anything else):

=====================  =============================================================
``outcome``            ``"allow"`` or ``"deny"``
``error``              deny only: ``"unauthorized"`` | ``"forbidden"`` | ``"rate_limited"`` |
                       ``"auth_unavailable"``
``message``            deny only: human text; for unauthorized never says what was wrong
``function``           the function the route belongs to
``auth_type``          ``"none"`` | ``"api_key"`` | ``"jwt"`` (``"none"`` for an anonymous caller of an
                       optional route)
``key_name``/``scope`` api_key mode, after the key was accepted
``subject``/``claims`` jwt mode: ``sub`` ("" if absent) and the verified claims as JSON
``ratelimit_outcome``  ``"allowed"`` | ``"limited"`` | ``"bypass"`` (no policy) |
                       ``"store_error"`` (failed open) | ``"skipped"`` (auth denied first)
``ratelimit_limit``, ``ratelimit_remaining``, ``ratelimit_reset``  when a policy was applied
``retry_after``        seconds, when limited
``authorizer_us``      time spent deciding
=====================  =============================================================
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from functions.gateway.errors import CredentialRejected, RateLimitStoreError
from functions.gateway.jwt_auth import JwtVerifier
from functions.gateway.keys import ADMIN_SCOPES, FUNCTION_SCOPES, ApiKeyStore, presented_key
from functions.gateway.ratelimit import RateLimiter
from functions.gateway.verdict import UNAUTHORIZED_MESSAGE, DenyCode, Verdict

if TYPE_CHECKING:
    from functions.shared.manifest import FunctionSpec, Project

_log = logging.getLogger("flux.gateway.authorizer")

MAX_CLAIMS_CHARS = 4096
_STANDARD_CLAIMS = ("iss", "sub", "aud", "exp", "nbf", "iat", "jti", "scope", "azp")

UNAVAILABLE_MESSAGE = "the authorizer could not decide; retry shortly"
RETRY_AFTER_S = 5


def refusal(error: DenyCode, message: str, **fields: Any) -> dict[str, Any]:
    """A soft deny: API Gateway lets the request through, the runtime refuses it with the standard body."""
    return Verdict.refused(error, message, **fields).response()


def unavailable() -> dict[str, Any]:
    """What an authorizer that cannot decide answers: refused, 503 ``auth_unavailable`` with ``Retry-After``."""
    return refusal("auth_unavailable", UNAVAILABLE_MESSAGE, retry_after=RETRY_AFTER_S)


class MalformedEvent(ValueError):
    """The event is not an API Gateway v2 request/authorizer event we can read."""


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """The parts of the event the authorizer reads (a typed view, so logic never digs in raw dicts)."""

    route_key: str
    headers: dict[str, str]
    source_ip: str

    @classmethod
    def from_event(cls, event: Any) -> AuthRequest:
        if not isinstance(event, dict):
            raise MalformedEvent("event is not an object")
        route_key = event.get("routeKey")
        if not isinstance(route_key, str) or not route_key:
            raise MalformedEvent("routeKey missing")
        raw_headers = event.get("headers") or {}
        if not isinstance(raw_headers, dict):
            raise MalformedEvent("headers is not an object")
        headers = {str(k).lower(): v for k, v in raw_headers.items() if isinstance(v, str)}
        request_context = event.get("requestContext")
        http = request_context.get("http") if isinstance(request_context, dict) else None
        source_ip = http.get("sourceIp") if isinstance(http, dict) else None
        return cls(route_key, headers, source_ip if isinstance(source_ip, str) and source_ip else "unknown")


class Authorizer:
    def __init__(self, project: Project, keys: ApiKeyStore, limiter: RateLimiter, jwt: JwtVerifier | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.project = project
        self.keys = keys
        self.limiter = limiter
        self.jwt = jwt
        self.clock = clock
        self._by_route = {spec.route_key: spec for spec in project.functions.values()}

    def authorize(self, event: dict[str, Any]) -> dict[str, Any]:
        """The simple response for one request. Never raises."""
        started = self.clock()
        try:
            request = AuthRequest.from_event(event)
            spec = self._by_route.get(request.route_key)
            if spec is None:
                _log.warning("authorizer: route %r is not a Flux function; refusing", request.route_key)
                return refusal("unauthorized", UNAUTHORIZED_MESSAGE)
            verdict = self._decide(spec, request)
        except MalformedEvent as exc:
            _log.warning("authorizer: unreadable event (%s); refusing", exc)
            return refusal("unauthorized", UNAUTHORIZED_MESSAGE)
        except Exception:  # noqa: BLE001 - an authorizer must fail closed, never crash
            _log.exception("authorizer: internal failure; refusing")
            return unavailable()
        return verdict._replace(authorizer_us=int((self.clock() - started) * 1_000_000)).response()

    def _decide(self, spec: FunctionSpec, request: AuthRequest) -> Verdict:
        caller = Verdict(allowed=False, function=spec.name, auth_type=spec.auth)
        bucket = f"ip:{request.source_ip}"
        if spec.auth == "api_key":
            presented = presented_key(request.headers)
            if presented is None and spec.auth_optional and "authorization" not in request.headers:
                # optional mode: an anonymous caller is served as such
                return self._rate_limit(spec, bucket, caller._replace(auth_type="none"))
            record = self.keys.authenticate(presented) if presented is not None else None
            if record is None:
                _log.info("authorizer: %s: API key missing or not valid", spec.name)
                return _deny(caller, "unauthorized", UNAUTHORIZED_MESSAGE)
            if record.scope not in FUNCTION_SCOPES:
                return _deny(caller, "forbidden", f"the API key {record.name!r} may not call functions")
            caller = caller._replace(key_name=record.name, scope=record.scope)
            bucket = f"key:{record.name}"
        elif spec.auth == "jwt":
            if self.jwt is None:
                raise RuntimeError(f"function {spec.name!r} requires JWT auth but no verifier is configured")
            presented = self.jwt.presented(request.headers)
            if presented is None and spec.auth_optional:
                return self._rate_limit(spec, bucket, caller._replace(auth_type="none"))
            token = self.jwt.token_from(presented) if presented is not None else None
            if token is None:  # absent on a required route, or sent in the wrong shape: 401 either way
                return _deny(caller, "unauthorized", UNAUTHORIZED_MESSAGE)
            try:
                claims = self.jwt.verify(token)
            except CredentialRejected as exc:
                _log.info("authorizer: %s: token rejected: %s", spec.name, exc.reason)
                return _deny(caller, "unauthorized", UNAUTHORIZED_MESSAGE)
            subject = claims.get("sub") if isinstance(claims.get("sub"), str) else ""
            caller = caller._replace(subject=subject, claims=_bounded_claims(claims))
            if subject:
                bucket = f"sub:{subject}"
        return self._rate_limit(spec, bucket, caller)

    def _rate_limit(self, spec: FunctionSpec, bucket: str, caller: Verdict) -> Verdict:
        if spec.rate_limit is None:
            return caller._replace(allowed=True, ratelimit_outcome="bypass")
        try:
            decision = self.limiter.hit(bucket_key(spec.name, bucket), spec.rate_limit)
        except RateLimitStoreError as exc:
            _log.warning("authorizer: %s: rate-limit store failed, admitting (fail open): %s", spec.name, exc)
            return caller._replace(allowed=True, ratelimit_outcome="store_error")
        counted = caller._replace(ratelimit_limit=decision.limit, ratelimit_remaining=decision.remaining,
                          ratelimit_reset=decision.reset_s)
        if not decision.allowed:
            limited = counted._replace(ratelimit_outcome="limited", retry_after=decision.retry_after_s)
            return _deny(limited, "rate_limited", f"rate limit exceeded; retry in {decision.retry_after_s} s",
                         rate_limit_checked=True)
        return counted._replace(allowed=True, ratelimit_outcome="allowed")


def _deny(caller: Verdict, error: DenyCode, message: str, *, rate_limit_checked: bool = False) -> Verdict:
    denied = caller._replace(allowed=False, error=error, message=message)
    return denied if rate_limit_checked else denied._replace(ratelimit_outcome="skipped")


def bucket_key(function: str, caller: str) -> str:
    """The rate-limit bucket of (function, caller); long callers (JWT subjects) are hashed to bound key size."""
    if len(caller) > 200:
        caller = "h:" + hashlib.sha256(caller.encode("utf-8")).hexdigest()
    return f"{function}|{caller}"


def _bounded_claims(claims: dict[str, Any]) -> dict[str, Any]:
    """Verified claims for ``ctx.auth.claims``; oversized claim sets keep only the standard claims.

    The size is measured as the JSON the context will carry, so the bound holds on the wire.
    """
    plain = json.loads(json.dumps(claims, default=str))
    if len(json.dumps(plain, separators=(",", ":"))) > MAX_CLAIMS_CHARS:
        plain = {k: plain[k] for k in _STANDARD_CLAIMS if k in plain}
    return plain


AdminVerdict = Literal["allow", "unauthorized", "forbidden"]


def admin_verdict(headers: Mapping[str, str], keys: ApiKeyStore) -> AdminVerdict:
    """Whether a request may use the observability API: an active key with the ``admin`` scope.

    ``"unauthorized"`` (401) for no or a bad key, ``"forbidden"`` (403) for a
    valid key without the scope. A key store failure raises
    :class:`functions.gateway.errors.KeyStoreError` (the API should answer 503).
    """
    presented = presented_key(headers)
    record = keys.authenticate(presented) if presented is not None else None
    if record is None:
        return "unauthorized"
    return "allow" if record.scope in ADMIN_SCOPES else "forbidden"


def check_admin_key(headers: Mapping[str, str], keys: ApiKeyStore) -> bool:
    return admin_verdict(headers, keys) == "allow"
