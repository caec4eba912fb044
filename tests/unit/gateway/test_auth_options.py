"""Issue #15: the JWT header and scheme per project, and optional auth per function."""

from __future__ import annotations

import time
from typing import Any

import jwt as pyjwt
import pytest

from functions.gateway.authorizer import Authorizer
from functions.gateway.jwt_auth import JwtVerifier
from functions.gateway.ratelimit_local import LocalRateLimiter
from functions.shared.manifest import FunctionConfig, JwtConfig

SECRET = "k" * 64


def token(sub: str = "alice", **extra: Any) -> str:
    return pyjwt.encode({"sub": sub, "exp": int(time.time()) + 60, **extra}, SECRET, algorithm="HS256")


def make(helpers: Any, clock: Any, *, auth: Any, header: str | None = None, scheme: str | None = None) -> Any:
    settings: dict[str, Any] = {"secret_name": "S", "algorithms": ["HS256"]}
    if header is not None:
        settings["header"] = header
    if scheme is not None:
        settings["scheme"] = scheme
    config = JwtConfig(**settings)
    verifier = JwtVerifier.from_config(config, secrets=helpers.MemorySecrets({"S": SECRET}))
    keys = helpers.MemoryKeyStore(clock)
    project = helpers.build_project({"feed": {"route": "/feed", "method": "GET", "auth": auth}},
                                    auth={"jwt": config.model_dump()})
    authorizer = Authorizer(project, keys, LocalRateLimiter(clock), verifier)

    def call(headers: dict[str, str] | None = None) -> dict[str, Any]:
        return authorizer.authorize(helpers.request_event("GET /feed", headers))["context"]

    call.keys = keys  # type: ignore[attr-defined]
    return call


def test_defaults_are_authorization_and_bearer() -> None:
    config = JwtConfig(secret_name="S")
    assert (config.header, config.scheme) == ("authorization", "Bearer")


def test_header_names_are_lower_cased_and_cookie_is_refused() -> None:
    assert JwtConfig(secret_name="S", header="X-Auth-Token").header == "x-auth-token"
    with pytest.raises(ValueError, match="cookie"):
        JwtConfig(secret_name="S", header="Cookie")
    with pytest.raises(ValueError):
        JwtConfig(secret_name="S", header="bad header")
    with pytest.raises(ValueError):
        JwtConfig(secret_name="S", scheme="two words")


def test_token_scheme_is_accepted_and_bearer_then_refused(helpers: Any, clock: Any) -> None:
    call = make(helpers, clock, auth="jwt", scheme="Token")
    allowed = call({"authorization": f"Token {token()}"})
    assert allowed["outcome"] == "allow" and allowed["subject"] == "alice"
    assert call({"authorization": f"token {token()}"})["outcome"] == "allow"  # schemes are case-insensitive
    assert call({"authorization": f"Bearer {token()}"})["error"] == "unauthorized"


def test_a_custom_header_with_an_empty_scheme_takes_the_raw_token(helpers: Any, clock: Any) -> None:
    call = make(helpers, clock, auth="jwt", header="X-Session", scheme="")
    assert call({"x-session": token("bob")})["subject"] == "bob"
    assert call({"authorization": f"Bearer {token()}"})["error"] == "unauthorized"
    assert call({"x-session": f"Bearer {token()}"})["error"] == "unauthorized"


def test_optional_jwt_serves_anonymous_callers_as_none(helpers: Any, clock: Any) -> None:
    call = make(helpers, clock, auth={"mode": "jwt", "optional": True})
    anonymous = call()
    assert anonymous["outcome"] == "allow" and anonymous["auth_type"] == "none"
    assert "subject" not in anonymous
    known = call({"authorization": f"Bearer {token('carol', role='admin')}"})
    assert known["auth_type"] == "jwt" and known["subject"] == "carol" and '"role":"admin"' in known["claims"]


@pytest.mark.parametrize("value", ["Bearer not.a.jwt", "Bearer", "Basic dXNlcjpwYXNz", "garbage"])
def test_optional_jwt_still_refuses_a_bad_credential(helpers: Any, clock: Any, value: str) -> None:
    call = make(helpers, clock, auth={"mode": "jwt", "optional": True})
    assert call({"authorization": value})["error"] == "unauthorized"


def test_optional_jwt_refuses_an_expired_token(helpers: Any, clock: Any) -> None:
    call = make(helpers, clock, auth={"mode": "jwt", "optional": True})
    expired = pyjwt.encode({"sub": "a", "exp": int(time.time()) - 3600}, SECRET, algorithm="HS256")
    assert call({"authorization": f"Bearer {expired}"})["error"] == "unauthorized"


def test_optional_api_key(helpers: Any, clock: Any) -> None:
    call = make(helpers, clock, auth={"mode": "api_key", "optional": True})
    assert call()["auth_type"] == "none" and call()["outcome"] == "allow"
    _, key = call.keys.create("shopper")
    known = call({"x-api-key": key})
    assert known["auth_type"] == "api_key" and known["key_name"] == "shopper"
    assert call({"x-api-key": "flx_wrong"})["error"] == "unauthorized"
    assert call({"authorization": "Bearer something-else"})["error"] == "unauthorized"


def test_required_mode_is_unchanged(helpers: Any, clock: Any) -> None:
    call = make(helpers, clock, auth={"mode": "jwt"})
    assert call()["error"] == "unauthorized"
    assert call({"authorization": f"Bearer {token()}"})["outcome"] == "allow"


def test_function_auth_object_form_is_validated() -> None:
    assert FunctionConfig.model_validate({"auth": {"mode": "jwt", "optional": True}}).auth.optional is True
    for bad in ({"mode": "none", "optional": True}, {"mode": "jwt", "optional": "yes"}, {"mode": "oauth"},
                {"mode": "jwt", "extra": 1}):
        with pytest.raises(ValueError):
            FunctionConfig.model_validate({"auth": bad})


def test_optional_mode_resolves_in_the_spec(helpers: Any) -> None:
    project = helpers.build_project({"a": {"auth": {"mode": "api_key", "optional": True}}, "b": {"auth": "api_key"}})
    assert (project.functions["a"].auth, project.functions["a"].auth_optional) == ("api_key", True)
    assert (project.functions["b"].auth, project.functions["b"].auth_optional) == ("api_key", False)


def test_json_schema_publishes_the_new_fields() -> None:
    from functions.shared.manifest import json_schemas

    schemas = json_schemas()
    assert schemas["function"]["$defs"]["AuthSetting"]["properties"]["optional"]["type"] == "boolean"
    jwt = schemas["project"]["$defs"]["JwtConfig"]["properties"]
    assert (jwt["header"]["default"], jwt["scheme"]["default"]) == ("authorization", "Bearer")
