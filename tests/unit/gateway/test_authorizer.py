"""The authorizer's decisions: auth modes, scopes, callers, rate limits, store failures, odd events."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from functions.gateway.authorizer import Authorizer, admin_verdict, bucket_key, check_admin_key
from functions.gateway.errors import KeyStoreError, RateLimitStoreError
from functions.gateway.keys import ApiKey, hash_key
from functions.gateway.ratelimit import RateDecision, RateLimiter
from functions.gateway.ratelimit_local import LocalRateLimiter
from functions.shared.manifest import RateLimit

LIMIT = {"requests": 3, "per_seconds": 60}
FUNCTIONS = {
    "create_order": {"route": "/orders", "method": "POST", "auth": "api_key", "rate_limit": LIMIT},
    "get_order": {"route": "/orders/{id}", "method": "GET", "auth": "api_key"},
    "health": {"route": "/health", "method": "GET", "auth": "none", "rate_limit": LIMIT},
}


@pytest.fixture
def setup(helpers: Any, clock: Any) -> Any:
    class Setup:
        keys = helpers.MemoryKeyStore(clock)
        limiter = LocalRateLimiter(clock)
        project = helpers.build_project(FUNCTIONS)
        authorizer = Authorizer(project, keys, limiter)

        def call(self, route_key: str, headers: dict[str, str] | None = None, ip: str = "203.0.113.7") -> dict:
            return self.authorizer.authorize(helpers.request_event(route_key, headers, ip))

    return Setup()


def test_valid_key_is_allowed_with_identity_and_rate_limit_numbers(setup: Any) -> None:
    _, key = setup.keys.create("ci")
    result = setup.call("POST /orders", {"x-api-key": key})
    assert result["isAuthorized"] is True
    context = result["context"]
    assert {k: v for k, v in context.items() if k != "authorizer_us"} == {
        "function": "create_order", "auth_type": "api_key", "key_name": "ci", "scope": "invoke",
        "outcome": "allow", "ratelimit_outcome": "allowed", "ratelimit_limit": 3, "ratelimit_remaining": 2,
        "ratelimit_reset": 20,
    }
    assert isinstance(context["authorizer_us"], int)
    assert all(isinstance(v, str | int) and not isinstance(v, bool) for v in context.values())
    assert key not in json.dumps(result)


def test_bearer_api_key_is_accepted(setup: Any) -> None:
    _, key = setup.keys.create("ci")
    assert setup.call("POST /orders", {"authorization": f"Bearer {key}"})["context"]["outcome"] == "allow"


@pytest.mark.parametrize("variant", ["missing", "wrong", "revoked", "leading space", "trailing space", "newline",
                                     "empty"])
def test_bad_keys_are_unauthorized_and_skip_the_rate_limit(setup: Any, variant: str) -> None:
    _, key = setup.keys.create("ci")
    if variant == "revoked":
        setup.keys.revoke("ci")
    headers = {
        "missing": {}, "wrong": {"x-api-key": key[:-2] + ("xx" if not key.endswith("xx") else "yy")},
        "revoked": {"x-api-key": key}, "leading space": {"x-api-key": " " + key},
        "trailing space": {"x-api-key": key + " "}, "newline": {"x-api-key": key + "\n"}, "empty": {"x-api-key": ""},
    }[variant]
    context = setup.call("POST /orders", headers)["context"]
    assert context["outcome"] == "deny"
    assert context["error"] == "unauthorized"
    assert context["message"] == "missing or invalid credentials"
    assert context["ratelimit_outcome"] == "skipped"
    assert "key_name" not in context
    assert len(setup.limiter) == 0  # refused callers do not consume anyone's bucket


def test_rate_limit_denies_with_retry_after_and_second_key_unaffected(setup: Any, clock: Any) -> None:
    _, key_a = setup.keys.create("a")
    _, key_b = setup.keys.create("b")
    outcomes = [setup.call("POST /orders", {"x-api-key": key_a})["context"] for _ in range(4)]
    assert [c["outcome"] for c in outcomes] == ["allow", "allow", "allow", "deny"]
    limited = outcomes[-1]
    assert limited["error"] == "rate_limited"
    assert limited["ratelimit_outcome"] == "limited"
    assert limited["retry_after"] == 20
    assert limited["ratelimit_remaining"] == 0
    assert limited["key_name"] == "a"
    assert setup.call("POST /orders", {"x-api-key": key_b})["context"]["outcome"] == "allow"
    clock.advance(limited["retry_after"])
    assert setup.call("POST /orders", {"x-api-key": key_a})["context"]["outcome"] == "allow"


def test_anonymous_routes_are_limited_per_source_ip(setup: Any) -> None:
    for _ in range(3):
        assert setup.call("GET /health", ip="198.51.100.1")["context"]["outcome"] == "allow"
    denied = setup.call("GET /health", ip="198.51.100.1")["context"]
    assert denied["error"] == "rate_limited" and denied["auth_type"] == "none"
    assert setup.call("GET /health", ip="198.51.100.2")["context"]["outcome"] == "allow"


def test_buckets_are_per_function_and_caller(setup: Any) -> None:
    _, key = setup.keys.create("ci")
    for _ in range(3):
        setup.call("POST /orders", {"x-api-key": key})
    assert setup.call("POST /orders", {"x-api-key": key})["context"]["outcome"] == "deny"
    assert setup.call("GET /health")["context"]["outcome"] == "allow"
    assert bucket_key("f", "key:ci") == "f|key:ci"
    assert len(bucket_key("f", "sub:" + "x" * 1000)) < 100


def test_route_without_policy_bypasses_the_limiter(setup: Any) -> None:
    _, key = setup.keys.create("ci")
    context = setup.call("GET /orders/{id}", {"x-api-key": key})["context"]
    assert context["outcome"] == "allow" and context["ratelimit_outcome"] == "bypass"
    assert "ratelimit_limit" not in context


def test_limiter_store_failure_fails_open_and_is_logged(helpers: Any, clock: Any,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    class BrokenLimiter(RateLimiter):
        def hit(self, key: str, limit: RateLimit) -> RateDecision:
            raise RateLimitStoreError("ProvisionedThroughputExceededException")

    keys = helpers.MemoryKeyStore(clock)
    _, key = keys.create("ci")
    authorizer = Authorizer(helpers.build_project(FUNCTIONS), keys, BrokenLimiter())
    with caplog.at_level(logging.WARNING, logger="flux.gateway.authorizer"):
        result = authorizer.authorize(helpers.request_event("POST /orders", {"x-api-key": key}))
    assert result["isAuthorized"] is True
    assert result["context"]["outcome"] == "allow"
    assert result["context"]["ratelimit_outcome"] == "store_error"
    assert "fail open" in caplog.text
    assert key not in caplog.text


def test_key_store_failure_fails_closed(helpers: Any, clock: Any, caplog: pytest.LogCaptureFixture) -> None:
    keys = helpers.MemoryKeyStore(clock)
    _, key = keys.create("ci")

    def broken(key_hash: str) -> ApiKey | None:
        raise KeyStoreError("table unavailable")

    keys.get_by_hash = broken  # type: ignore[method-assign]
    authorizer = Authorizer(helpers.build_project(FUNCTIONS), keys, LocalRateLimiter(clock))
    with caplog.at_level(logging.ERROR):
        result = authorizer.authorize(helpers.request_event("POST /orders", {"x-api-key": key}))
    assert result["isAuthorized"] is True  # soft deny: the runtime answers 503 with Flux's body
    assert (result["context"]["outcome"], result["context"]["error"]) == ("deny", "auth_unavailable")
    assert key not in caplog.text
    # anonymous routes do not need the key store
    assert authorizer.authorize(helpers.request_event("GET /health"))["isAuthorized"] is True


def test_key_with_an_unknown_scope_is_forbidden(helpers: Any, clock: Any) -> None:
    keys = helpers.MemoryKeyStore(clock)
    key = "flx_live_" + "Q" * 43
    keys.insert(ApiKey("legacy", key[:12], hash_key(key), "read-only", clock()))
    authorizer = Authorizer(helpers.build_project(FUNCTIONS), keys, LocalRateLimiter(clock))
    context = authorizer.authorize(helpers.request_event("POST /orders", {"x-api-key": key}))["context"]
    assert context["outcome"] == "deny" and context["error"] == "forbidden"
    assert "legacy" in context["message"]


@pytest.mark.parametrize("event", [
    None, [], "POST /orders", {}, {"routeKey": ""}, {"routeKey": 7}, {"routeKey": "POST /orders", "headers": "x"},
])
def test_unreadable_events_are_refused_with_a_soft_deny(setup: Any, event: Any) -> None:
    result = setup.authorizer.authorize(event)
    assert result["isAuthorized"] is True
    assert (result["context"]["outcome"], result["context"]["error"]) == ("deny", "unauthorized")


def test_odd_field_types_are_tolerated_and_refused(setup: Any) -> None:
    event = {"routeKey": "POST /orders", "headers": {"x-api-key": ["a", "b"]}, "requestContext": "nope"}
    result = setup.authorizer.authorize(event)
    assert result["isAuthorized"] is True
    assert result["context"]["error"] == "unauthorized"


@pytest.mark.parametrize("route_key", ["$default", "DELETE /orders", "POST /orders/extra", "GET /_flux/api/traces"])
def test_routes_that_are_not_functions_are_refused_with_a_soft_deny(setup: Any, route_key: str) -> None:
    result = setup.call(route_key)
    assert result["isAuthorized"] is True
    assert (result["context"]["outcome"], result["context"]["error"]) == ("deny", "unauthorized")


def test_missing_source_ip_still_rate_limits_as_unknown(setup: Any, helpers: Any) -> None:
    event = helpers.request_event("GET /health")
    del event["requestContext"]["http"]
    assert setup.authorizer.authorize(event)["context"]["outcome"] == "allow"
    assert "health|ip:unknown" in setup.limiter._tats


def test_jwt_route_without_a_verifier_fails_closed(helpers: Any, clock: Any) -> None:
    project = helpers.build_project({"me": {"route": "/me", "method": "GET", "auth": "jwt"}},
                                    auth={"jwt": {"secret_name": "S", "algorithms": ["HS256"]}})
    authorizer = Authorizer(project, helpers.MemoryKeyStore(clock), LocalRateLimiter(clock), None)
    context = authorizer.authorize(helpers.request_event("GET /me", {"authorization": "Bearer a.b.c"}))["context"]
    assert (context["outcome"], context["error"]) == ("deny", "auth_unavailable")


def test_jwt_callers_are_limited_by_subject(helpers: Any, clock: Any) -> None:
    import time

    import jwt as pyjwt

    from functions.gateway.jwt_auth import JwtVerifier
    from functions.shared.manifest import JwtConfig

    secret = "k" * 64
    config = JwtConfig(secret_name="S", algorithms=["HS256"])
    verifier = JwtVerifier.from_config(config, secrets=helpers.MemorySecrets({"S": secret}))
    project = helpers.build_project(
        {"me": {"route": "/me", "method": "GET", "auth": "jwt", "rate_limit": {"requests": 1, "per_seconds": 60}}},
        auth={"jwt": config.model_dump()})
    authorizer = Authorizer(project, helpers.MemoryKeyStore(clock), LocalRateLimiter(clock), verifier)

    def call(sub: str | None, ip: str) -> dict[str, Any]:
        claims = {"exp": int(time.time()) + 60, "role": "x" * 5000}
        if sub:
            claims["sub"] = sub
        token = pyjwt.encode(claims, secret, algorithm="HS256")
        return authorizer.authorize(helpers.request_event("GET /me", {"authorization": f"Bearer {token}"}, ip))

    first = call("alice", "198.51.100.1")["context"]
    assert first["outcome"] == "allow" and first["subject"] == "alice" and first["auth_type"] == "jwt"
    assert json.loads(first["claims"]) == {"sub": "alice", "exp": json.loads(first["claims"])["exp"]}  # trimmed
    assert call("alice", "198.51.100.2")["context"]["error"] == "rate_limited"  # same subject, other IP
    assert call("bob", "198.51.100.1")["context"]["outcome"] == "allow"
    no_sub = call(None, "198.51.100.9")["context"]
    assert no_sub["outcome"] == "allow" and no_sub["subject"] == ""
    assert call(None, "198.51.100.9")["context"]["error"] == "rate_limited"  # falls back to the IP


def test_admin_verdict(helpers: Any, clock: Any) -> None:
    keys = helpers.MemoryKeyStore(clock)
    _, admin = keys.create("ops", "admin")
    _, invoke = keys.create("ci", "invoke")
    assert admin_verdict({"x-api-key": admin}, keys) == "allow"
    assert check_admin_key({"authorization": f"Bearer {admin}"}, keys) is True
    assert admin_verdict({"x-api-key": invoke}, keys) == "forbidden"
    assert admin_verdict({}, keys) == "unauthorized"
    assert admin_verdict({"x-api-key": admin + " "}, keys) == "unauthorized"
    keys.revoke("ops")
    assert check_admin_key({"x-api-key": admin}, keys) is False


def test_admin_keys_may_also_call_functions(setup: Any) -> None:
    _, key = setup.keys.create("ops", "admin")
    context = setup.call("POST /orders", {"x-api-key": key})["context"]
    assert context["outcome"] == "allow" and context["scope"] == "admin"
