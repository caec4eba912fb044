"""API keys, JWT and rate limits through the emulated HTTP API and its Lambda REQUEST authorizer.

Keys are created and revoked with the CLI against the stack's key table (the
``KeysTableName`` output), as the README tells a user to; tokens are signed here with
the secret the test stored through `flux secrets set --stage dev`.
"""

from __future__ import annotations

import json
import re
import time

import jwt
import pytest

pytestmark = pytest.mark.xdist_group("deployed")


def standard_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body.get("error") == code, body
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers.get("x-request-id", "")), dict(response.headers)
    assert body.get("request_id") == response.headers["x-request-id"]


@pytest.fixture(scope="module")
def key(cli, deployed):
    done = cli("keys", "create", "--name", "deployed-tier", "--table", deployed.outputs["KeysTableName"], "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["key"]


# /me has a rate limit (a metered route: the authorizer runs on every request); /me/cached has none,
# the kind of route an authorizer result cache would serve.
ROUTES = ["/me", "/me/cached"]


@pytest.mark.parametrize("route", ROUTES)
def test_api_key_in_x_api_key_header(api, key, route):
    response = api.get(route, headers={"x-api-key": key})
    assert response.status_code == 200, response.text
    assert response.json()["auth"]["key_name"] == "deployed-tier"


@pytest.mark.parametrize("route", ROUTES)
def test_api_key_as_bearer_token(api, key, route):
    response = api.get(route, headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    assert response.json()["auth"]["key_name"] == "deployed-tier"


@pytest.mark.parametrize("route", ROUTES)
def test_missing_or_wrong_key_is_the_standard_401(api, key, route):
    standard_error(api.get(route), 401, "unauthorized")
    standard_error(api.get(route, headers={"x-api-key": "flx_live_" + "0" * 43}), 401, "unauthorized")
    standard_error(api.get(route, headers={"authorization": "Bearer nonsense"}), 401, "unauthorized")


@pytest.mark.parametrize("route", ROUTES)
def test_revoked_key_stops_working_at_once(api, cli, deployed, route):
    table = deployed.outputs["KeysTableName"]
    name = "to-revoke" + route.replace("/", "-")
    created = cli("keys", "create", "--name", name, "--table", table, "--json")
    assert created.returncode == 0, created.stderr
    secret = json.loads(created.stdout)["key"]
    assert api.get(route, headers={"x-api-key": secret}).status_code == 200
    assert api.get(route, headers={"authorization": f"Bearer {secret}"}).status_code == 200
    revoked = cli("keys", "revoke", name, "--table", table, "--json")
    assert revoked.returncode == 0, revoked.stderr
    standard_error(api.get(route, headers={"x-api-key": secret}), 401, "unauthorized")
    standard_error(api.get(route, headers={"authorization": f"Bearer {secret}"}), 401, "unauthorized")


def token(secret: str, **claims) -> str:
    now = int(time.time())
    body = {"sub": "user-42", "iss": "flux-deployed-tests", "aud": "shop", "iat": now, "exp": now + 300, **claims}
    return jwt.encode(body, secret, algorithm="HS256")


def test_jwt_route(api, jwt_secret):
    response = api.get("/jwt/me", headers={"authorization": f"Bearer {token(jwt_secret)}"})
    assert response.status_code == 200, response.text
    assert response.json()["auth"]["type"] == "jwt"
    assert response.json()["auth"]["subject"] == "user-42"
    standard_error(api.get("/jwt/me"), 401, "unauthorized")
    standard_error(api.get("/jwt/me", headers={"authorization": f"Bearer {token('a-wrong-secret-of-thirty-two-bytes')}"}), 401,
                   "unauthorized")
    expired = token(jwt_secret, exp=int(time.time()) - 3600)
    standard_error(api.get("/jwt/me", headers={"authorization": f"Bearer {expired}"}), 401, "unauthorized")


def test_rate_limit_answers_429_with_retry_after(api):
    statuses = []
    for _ in range(6):
        response = api.get("/limited")
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert statuses[0] == 200, statuses
    assert statuses[-1] == 429, statuses
    standard_error(response, 429, "rate_limited")
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["ratelimit-limit"] == "2"


def test_cors_preflight_is_answered_by_the_api(api):
    response = api.options("/orders", headers={"origin": "http://localhost:3000",
                                               "access-control-request-method": "POST",
                                               "access-control-request-headers": "content-type,x-request-id"})
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "x-request-id", "traceparent"} <= allowed, allowed
    other = api.options("/orders", headers={"origin": "https://evil.example", "access-control-request-method": "POST"})
    assert "access-control-allow-origin" not in other.headers
    simple = api.post("/hello", json={}, headers={"origin": "http://localhost:3000"})
    assert simple.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "x-request-id" in simple.headers["access-control-expose-headers"]
