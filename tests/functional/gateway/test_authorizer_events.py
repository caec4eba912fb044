"""The authorizer driven by the real-shaped API Gateway events in tests/events/, with the local adapters.

This is the ``flux dev`` wiring: a project loaded from disk, the SQLite key
store under ``.flux/``, the in-process limiter and an HS256 verifier reading
its secret from a secrets store.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from functions.gateway.authorizer import Authorizer
from functions.gateway.jwt_auth import JwtVerifier
from functions.gateway.keys_sqlite import open_project_key_store
from functions.gateway.ratelimit_local import LocalRateLimiter
from functions.gateway.verdict import Verdict
from functions.shared.apigw import HttpRequest, build_event
from functions.shared.errors import error_response
from functions.shared.manifest import load_project

SECRET = "x" * 64


@pytest.fixture
def local(project_dir: Path, helpers: Any) -> Any:
    project = load_project(project_dir)
    keys = open_project_key_store(project_dir)
    clock = helpers.FixedClock(time.time())
    verifier = JwtVerifier.from_config(project.config.auth.jwt, secrets=helpers.MemorySecrets({"JWT_SECRET": SECRET}))

    class Local:
        pass

    local = Local()
    local.project, local.keys, local.clock = project, keys, clock
    local.authorizer = Authorizer(project, keys, LocalRateLimiter(clock), verifier)
    return local


def token(**claims: Any) -> str:
    base = {"sub": "user-42", "iss": "https://issuer.example", "exp": int(time.time()) + 600}
    base.update(claims)
    return jwt.encode(base, SECRET, algorithm="HS256")


def test_api_key_sample(local: Any, event: Any) -> None:
    sample = event("gateway_authorizer_api_key.json")
    as_is = local.authorizer.authorize(sample)["context"]
    assert (as_is["outcome"], as_is["error"]) == ("deny", "unauthorized")  # the sample's key was never issued
    _, key = local.keys.create("ci")
    sample["headers"]["x-api-key"] = key
    result = local.authorizer.authorize(sample)
    context = result["context"]
    assert result["isAuthorized"] is True
    assert (context["outcome"], context["key_name"], context["function"]) == ("allow", "ci", "create_order")
    assert (context["ratelimit_limit"], context["ratelimit_remaining"]) == (20, 19)
    assert Verdict.from_context(context).ratelimit_headers() == {
        "RateLimit-Limit": "20", "RateLimit-Remaining": "19", "RateLimit-Reset": "3"}
    assert Verdict.from_context(context).auth() == {"type": "api_key", "key_name": "ci", "scope": "invoke"}
    assert local.keys.get_by_name("ci").last_used_at is not None


def test_api_key_sample_rate_limited_after_20(local: Any, event: Any) -> None:
    sample = event("gateway_authorizer_api_key.json")
    _, key = local.keys.create("ci")
    sample["headers"]["x-api-key"] = key
    contexts = [local.authorizer.authorize(sample)["context"] for _ in range(21)]
    assert [c["outcome"] for c in contexts].count("allow") == 20
    response = error_response(Verdict.from_context(contexts[-1]).denial(), "rid")
    assert response["statusCode"] == 429
    assert response["headers"]["Retry-After"] == "3"
    local.clock.advance(3)
    assert local.authorizer.authorize(sample)["context"]["outcome"] == "allow"


def test_jwt_sample(local: Any, event: Any) -> None:
    sample = event("gateway_authorizer_bearer_jwt.json")
    rejected = local.authorizer.authorize(sample)["context"]  # the sample's token is expired and badly signed
    assert (rejected["outcome"], rejected["error"], rejected["auth_type"]) == ("deny", "unauthorized", "jwt")
    assert error_response(Verdict.from_context(rejected).denial(), "rid")["statusCode"] == 401
    sample["headers"]["authorization"] = f"Bearer {token(role='buyer')}"
    context = local.authorizer.authorize(sample)["context"]
    assert (context["outcome"], context["subject"], context["ratelimit_outcome"]) == ("allow", "user-42", "bypass")
    assert Verdict.from_context(context).auth()["claims"]["role"] == "buyer"
    attrs = Verdict.from_context(context).span_attrs()
    assert attrs["auth.subject"] == "user-42" and attrs["auth.outcome"] == "allow"
    serialized = json.dumps(attrs)
    assert "session=abc123" not in serialized and sample["headers"]["authorization"][7:] not in serialized


def test_anonymous_sample_is_limited_by_source_ip(local: Any, event: Any) -> None:
    sample = event("gateway_authorizer_anonymous.json")
    outcomes = [local.authorizer.authorize(sample)["context"]["outcome"] for _ in range(3)]
    assert outcomes == ["allow", "allow", "deny"]
    sample["requestContext"]["http"]["sourceIp"] = "192.0.2.45"
    assert local.authorizer.authorize(sample)["context"]["outcome"] == "allow"


def test_default_route_sample_is_refused_with_a_soft_deny(local: Any, event: Any) -> None:
    result = local.authorizer.authorize(event("gateway_authorizer_default_route.json"))
    assert result["isAuthorized"] is True
    assert (result["context"]["outcome"], result["context"]["error"]) == ("deny", "unauthorized")


def test_runtime_samples_decode_into_verdicts(event: Any) -> None:
    allowed = Verdict.from_event(event("gateway_request_authorized.json"))
    assert allowed is not None
    assert allowed.denial() is None
    assert allowed.auth() == {"type": "api_key", "key_name": "ci", "scope": "invoke"}
    limited = Verdict.from_event(event("gateway_request_rate_limited.json"))
    assert limited is not None
    response = error_response(limited.denial(), "rid")
    assert response["statusCode"] == 429
    assert response["headers"]["Retry-After"] == "3"
    assert response["headers"]["RateLimit-Remaining"] == "0"
    assert limited.span_attrs()["ratelimit.outcome"] == "limited"


def test_flux_dev_event_from_the_shared_converter(local: Any) -> None:
    """What ``flux dev`` does: build the v2 event with functions.shared.apigw and call the same authorizer."""
    _, key = local.keys.create("dev")
    request = HttpRequest("POST", "/orders", headers=(("X-Api-Key", key), ("Content-Type", "application/json")),
                          body=b"{}", source_ip="127.0.0.1")
    result = local.authorizer.authorize(build_event(request, route_key="POST /orders"))
    assert result["context"]["outcome"] == "allow" and result["context"]["key_name"] == "dev"
    missing = build_event(HttpRequest("POST", "/orders"), route_key="POST /orders")
    assert local.authorizer.authorize(missing)["context"]["error"] == "unauthorized"


def test_build_local_authorizer_shares_the_cli_key_store(project_dir: Path, helpers: Any, event: Any) -> None:
    from typer.testing import CliRunner

    from cli.commands.keys import app
    from functions.gateway.local import build_local_authorizer

    project = load_project(project_dir)
    authorizer = build_local_authorizer(project, secrets=helpers.MemorySecrets({"JWT_SECRET": SECRET}))
    created = CliRunner().invoke(app, ["create", "--name", "dev", "-C", str(project_dir)])
    assert created.exit_code == 0
    sample = event("gateway_authorizer_api_key.json")
    assert authorizer.authorize(sample)["context"]["error"] == "unauthorized"
    sample["headers"]["x-api-key"] = created.stdout.strip()
    assert authorizer.authorize(sample)["context"]["key_name"] == "dev"
    jwt_sample = event("gateway_authorizer_bearer_jwt.json")
    jwt_sample["headers"]["authorization"] = f"Bearer {token()}"
    assert authorizer.authorize(jwt_sample)["context"]["subject"] == "user-42"
    with pytest.raises(ValueError, match="secrets"):
        build_local_authorizer(project)
