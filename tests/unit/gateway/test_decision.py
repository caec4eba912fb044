"""The runtime side of the contract: refusals, headers, ctx.auth and span attributes from the context."""

from __future__ import annotations

import json
from typing import Any

from functions.gateway.decision import (
    auth_for_ctx,
    authorizer_context,
    denial,
    gateway_span_attrs,
    ratelimit_headers,
)
from functions.shared.errors import Forbidden, RateLimited, Unauthorized, error_response

ALLOW_KEY = {"function": "create_order", "auth_type": "api_key", "key_name": "ci", "scope": "invoke",
             "outcome": "allow", "ratelimit_outcome": "allowed", "ratelimit_limit": 20, "ratelimit_remaining": 7,
             "ratelimit_reset": 39, "authorizer_us": 41}
LIMITED = {**ALLOW_KEY, "outcome": "deny", "error": "rate_limited", "message": "rate limit exceeded; retry in 3 s",
           "ratelimit_outcome": "limited", "ratelimit_remaining": 0, "ratelimit_reset": 60, "retry_after": 3}


def test_allow_is_not_a_denial() -> None:
    assert denial(ALLOW_KEY) is None


def test_rate_limited_becomes_429_with_retry_after_and_ratelimit_headers() -> None:
    error = denial(LIMITED)
    assert isinstance(error, RateLimited)
    response = error_response(error, "rid")
    assert response["statusCode"] == 429
    assert response["headers"]["Retry-After"] == "3"
    assert response["headers"]["RateLimit-Limit"] == "20"
    assert response["headers"]["RateLimit-Remaining"] == "0"
    assert response["headers"]["RateLimit-Reset"] == "60"
    assert json.loads(response["body"])["error"] == "rate_limited"


def test_unauthorized_and_forbidden_map_to_401_and_403() -> None:
    unauthorized = {"auth_type": "api_key", "outcome": "deny", "error": "unauthorized",
                    "message": "missing or invalid credentials", "ratelimit_outcome": "skipped"}
    assert isinstance(denial(unauthorized), Unauthorized)
    assert error_response(denial(unauthorized), "r")["statusCode"] == 401
    forbidden = {**unauthorized, "error": "forbidden", "message": "no scope"}
    assert isinstance(denial(forbidden), Forbidden)
    assert error_response(denial(forbidden), "r")["statusCode"] == 403


def test_an_authorizer_that_cannot_decide_is_a_503_with_retry_after() -> None:
    from functions.gateway.authorizer import unavailable

    verdict = unavailable()
    assert verdict["isAuthorized"] is True  # never API Gateway's bare 403: the runtime answers with Flux's body
    response = error_response(denial(verdict["context"]), "r")
    assert response["statusCode"] == 503
    assert response["headers"]["Retry-After"] == "5"
    assert json.loads(response["body"])["error"] == "auth_unavailable"
    assert gateway_span_attrs(verdict["context"])["auth.outcome"] == "auth_unavailable"


def test_an_unreadable_verdict_is_a_refusal() -> None:
    assert isinstance(denial({}), Unauthorized)
    assert isinstance(denial({"outcome": "maybe", "error": "teapot"}), Unauthorized)


def test_ratelimit_headers_are_strings_and_absent_without_policy() -> None:
    assert ratelimit_headers(ALLOW_KEY) == {"RateLimit-Limit": "20", "RateLimit-Remaining": "7",
                                            "RateLimit-Reset": "39"}
    assert ratelimit_headers({"outcome": "allow", "ratelimit_outcome": "bypass"}) == {}
    # API Gateway may hand numbers back as strings
    assert ratelimit_headers({"ratelimit_limit": "5", "ratelimit_remaining": "x"}) == {"RateLimit-Limit": "5"}


def test_auth_for_ctx() -> None:
    assert auth_for_ctx(ALLOW_KEY) == {"type": "api_key", "key_name": "ci", "scope": "invoke"}
    assert auth_for_ctx({"auth_type": "none"}) == {"type": "none"}
    jwt_context = {"auth_type": "jwt", "subject": "u1", "claims": json.dumps({"sub": "u1", "role": "admin"})}
    assert auth_for_ctx(jwt_context) == {"type": "jwt", "subject": "u1", "claims": {"sub": "u1", "role": "admin"}}
    assert auth_for_ctx({"auth_type": "jwt", "claims": "{not json"}) == {"type": "jwt", "claims": {}}


def test_gateway_span_attrs_never_carry_credentials() -> None:
    attrs = gateway_span_attrs(ALLOW_KEY)
    assert attrs == {"auth.mode": "api_key", "auth.outcome": "allow", "auth.key_name": "ci",
                     "ratelimit.outcome": "allowed", "ratelimit.remaining": 7, "auth.duration_us": 41}
    limited = gateway_span_attrs(LIMITED)
    assert limited["auth.outcome"] == "allow" and limited["ratelimit.outcome"] == "limited"
    denied = gateway_span_attrs({"auth_type": "jwt", "outcome": "deny", "error": "unauthorized",
                                 "ratelimit_outcome": "skipped"})
    assert denied == {"auth.mode": "jwt", "auth.outcome": "unauthorized", "ratelimit.outcome": "skipped"}
    jwt_attrs = gateway_span_attrs({"auth_type": "jwt", "outcome": "allow", "subject": "u1", "claims": "{}",
                                    "ratelimit_outcome": "bypass"})
    assert jwt_attrs["auth.subject"] == "u1" and "claims" not in json.dumps(jwt_attrs)


def test_authorizer_context_reads_the_runtime_event() -> None:
    event: dict[str, Any] = {"requestContext": {"authorizer": {"lambda": dict(ALLOW_KEY)}}}
    assert authorizer_context(event) == ALLOW_KEY
    assert authorizer_context({"requestContext": {}}) is None
    assert authorizer_context({}) is None
