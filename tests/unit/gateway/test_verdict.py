"""The authorizer's verdict: its wire form round-trips, malformed contexts fail closed, and what the pipeline reads."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.gateway.authorizer import unavailable
from functions.gateway.errors import AuthUnavailable
from functions.gateway.verdict import Verdict
from functions.shared.errors import Forbidden, RateLimited, Unauthorized, error_response

ALLOW_KEY = {"function": "create_order", "auth_type": "api_key", "key_name": "ci", "scope": "invoke",
             "outcome": "allow", "ratelimit_outcome": "allowed", "ratelimit_limit": 20, "ratelimit_remaining": 7,
             "ratelimit_reset": 39, "authorizer_us": 41}
LIMITED = {**ALLOW_KEY, "outcome": "deny", "error": "rate_limited", "message": "rate limit exceeded; retry in 3 s",
           "ratelimit_outcome": "limited", "ratelimit_remaining": 0, "ratelimit_reset": 60, "retry_after": 3}

_text = st.text(max_size=20)
_count = st.none() | st.integers(min_value=-(10**12), max_value=10**12)
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                  max_size=3), max_leaves=8)


@st.composite
def verdicts(draw: st.DrawFn) -> Verdict:
    """Any verdict the authorizer can write: caller fields only for their auth type, error exactly on deny."""
    allowed = draw(st.booleans())
    auth_type = draw(st.sampled_from(["none", "api_key", "jwt"]))
    return Verdict(
        allowed=allowed,
        error=None if allowed else draw(st.sampled_from(["unauthorized", "forbidden", "rate_limited",
                                                          "auth_unavailable"])),
        message=None if allowed else draw(_text),
        function=draw(st.none() | _text),
        auth_type=auth_type,
        key_name=draw(st.none() | _text) if auth_type == "api_key" else None,
        scope=draw(st.none() | _text) if auth_type == "api_key" else None,
        subject=draw(st.none() | _text) if auth_type == "jwt" else None,
        claims=draw(st.none() | st.dictionaries(st.text(max_size=8), _json, max_size=4)) if auth_type == "jwt"
        else None,
        ratelimit_outcome=draw(st.sampled_from(["allowed", "limited", "bypass", "store_error", "skipped"])),
        ratelimit_limit=draw(_count), ratelimit_remaining=draw(_count), ratelimit_reset=draw(_count),
        retry_after=draw(_count), authorizer_us=draw(_count),
    )


def _event(context: Any) -> dict[str, Any]:
    return {"requestContext": {"authorizer": {"lambda": context}}}


@given(verdicts())
def test_any_verdict_survives_the_trip_through_the_context(verdict: Verdict) -> None:
    context = verdict.to_context()
    assert all(isinstance(v, (str, int, bool)) for v in context.values())  # all a simple response may carry
    assert Verdict.from_event(_event(context)) == verdict


@given(verdicts())
def test_numbers_handed_back_as_strings_read_the_same(verdict: Verdict) -> None:
    as_strings = {k: str(v) if isinstance(v, int) else v for k, v in verdict.to_context().items()}
    assert Verdict.from_context(as_strings) == verdict


MALFORMED: list[Any] = [
    None, "allow", ["outcome", "allow"], {},
    {"outcome": "maybe"},
    {"outcome": "deny", "error": "teapot"},
    {"outcome": "deny"},
    {"outcome": "allow", "error": "unauthorized"},
    {"outcome": "allow", "auth_type": "root"},
    {"outcome": "allow", "ratelimit_outcome": "whatever"},
    {"outcome": "allow", "ratelimit_remaining": "x"},
    {"outcome": "allow", "ratelimit_limit": True},
    {"outcome": "allow", "retry_after": 1.5},
    {"outcome": "allow", "authorizer_us": "²"},
    {"outcome": "allow", "key_name": 7},
    {"outcome": "allow", "auth_type": "jwt", "claims": "{not json"},
    {"outcome": "allow", "auth_type": "jwt", "claims": "[1, 2]"},
    {"outcome": "allow", "auth_type": "jwt", "claims": 3},
]


@pytest.mark.parametrize("context", MALFORMED)
def test_a_malformed_context_is_a_401_refusal(context: Any) -> None:
    verdict = Verdict.from_event(_event(context))
    assert verdict is not None and not verdict.allowed
    error = verdict.denial()
    assert isinstance(error, Unauthorized)
    assert error_response(error, "r")["statusCode"] == 401
    assert verdict.auth() == {"type": "none"}  # nothing from an unreadable verdict reaches ctx.auth
    assert verdict.span_attrs()["auth.outcome"] == "unauthorized"


def test_no_authorizer_at_all_is_no_verdict() -> None:
    assert Verdict.from_event({}) is None
    assert Verdict.from_event({"requestContext": {}}) is None
    assert Verdict.from_event({"requestContext": {"authorizer": {}}}) is None
    assert Verdict.from_event({"requestContext": "x"}) is None


def test_allow_is_not_a_denial() -> None:
    verdict = Verdict.from_context(ALLOW_KEY)
    assert verdict.allowed and verdict.denial() is None
    assert verdict.to_context() == ALLOW_KEY


def test_rate_limited_becomes_429_with_retry_after_and_ratelimit_headers() -> None:
    error = Verdict.from_context(LIMITED).denial()
    assert isinstance(error, RateLimited)
    response = error_response(error, "rid")
    assert response["statusCode"] == 429
    assert {k: response["headers"][k] for k in ("Retry-After", "RateLimit-Limit", "RateLimit-Remaining",
                                                "RateLimit-Reset")} == {
        "Retry-After": "3", "RateLimit-Limit": "20", "RateLimit-Remaining": "0", "RateLimit-Reset": "60"}
    assert json.loads(response["body"])["error"] == "rate_limited"


def test_unauthorized_and_forbidden_map_to_401_and_403() -> None:
    unauthorized = {"auth_type": "api_key", "outcome": "deny", "error": "unauthorized",
                    "message": "missing or invalid credentials", "ratelimit_outcome": "skipped"}
    assert error_response(Verdict.from_context(unauthorized).denial(), "r")["statusCode"] == 401
    forbidden = Verdict.from_context({**unauthorized, "error": "forbidden", "message": "no scope"}).denial()
    assert isinstance(forbidden, Forbidden) and str(forbidden) == "no scope"
    assert error_response(forbidden, "r")["statusCode"] == 403


def test_an_authorizer_that_cannot_decide_is_a_503_with_retry_after() -> None:
    result = unavailable()
    assert result["isAuthorized"] is True  # never API Gateway's bare 403: the runtime answers with Flux's body
    verdict = Verdict.from_context(result["context"])
    assert isinstance(verdict.denial(), AuthUnavailable)
    response = error_response(verdict.denial(), "r")
    assert response["statusCode"] == 503
    assert response["headers"]["Retry-After"] == "5"
    assert json.loads(response["body"])["error"] == "auth_unavailable"
    assert verdict.span_attrs()["auth.outcome"] == "auth_unavailable"


def test_ratelimit_headers_are_strings_and_absent_without_policy() -> None:
    assert Verdict.from_context(ALLOW_KEY).ratelimit_headers() == {
        "RateLimit-Limit": "20", "RateLimit-Remaining": "7", "RateLimit-Reset": "39"}
    assert Verdict(allowed=True).ratelimit_headers() == {}


def test_auth_for_user_code() -> None:
    assert Verdict.from_context(ALLOW_KEY).auth() == {"type": "api_key", "key_name": "ci", "scope": "invoke"}
    assert Verdict(allowed=True).auth() == {"type": "none"}
    jwt_context = {"outcome": "allow", "auth_type": "jwt", "subject": "u1",
                   "claims": json.dumps({"sub": "u1", "role": "admin"})}
    assert Verdict.from_context(jwt_context).auth() == {"type": "jwt", "subject": "u1",
                                                        "claims": {"sub": "u1", "role": "admin"}}


def test_span_attrs_never_carry_credentials_or_claims() -> None:
    assert Verdict.from_context(ALLOW_KEY).span_attrs() == {
        "auth.mode": "api_key", "auth.outcome": "allow", "auth.key_name": "ci", "ratelimit.outcome": "allowed",
        "ratelimit.remaining": 7, "auth.duration_us": 41}
    limited = Verdict.from_context(LIMITED).span_attrs()
    assert limited["auth.outcome"] == "allow" and limited["ratelimit.outcome"] == "limited"
    denied = Verdict.from_context({"auth_type": "jwt", "outcome": "deny", "error": "unauthorized",
                                   "ratelimit_outcome": "skipped"}).span_attrs()
    assert denied == {"auth.mode": "jwt", "auth.outcome": "unauthorized", "ratelimit.outcome": "skipped"}
    jwt_attrs = Verdict.from_context({"auth_type": "jwt", "outcome": "allow", "subject": "u1",
                                      "claims": '{"secret":"s3"}', "ratelimit_outcome": "bypass"}).span_attrs()
    assert jwt_attrs["auth.subject"] == "u1" and "s3" not in json.dumps(jwt_attrs)
