"""The gateway under `flux dev`: API keys from `flux keys create`, rate limits, CORS, the gateway span."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from functions.observability.sqlite_store import SqliteSpanStore
from tests.e2e.conftest import flux

pytestmark = pytest.mark.e2e


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "gw"
    (root / "functions" / "open").mkdir(parents=True)
    (root / "functions" / "secret").mkdir(parents=True)
    (root / "flux.json").write_text(json.dumps({"name": "gw", "cors": {"origins": ["https://app.example.com"]}}))
    (root / "functions" / "open" / "index.ts").write_text("export default async (i, ctx) => ({auth: ctx.auth});")
    (root / "functions" / "open" / "flux.json").write_text(
        json.dumps({"route": "/open", "rate_limit": {"requests": 3, "per_seconds": 60}}))
    (root / "functions" / "secret" / "index.ts").write_text("export default async (i, ctx) => ({auth: ctx.auth});")
    (root / "functions" / "secret" / "flux.json").write_text(json.dumps({"route": "/secret", "auth": "api_key"}))
    return root


def test_api_key_route_rate_limit_cors_and_gateway_span(project, dev_server_factory):
    created = flux("keys", "create", "--name", "ci", "-C", str(project))
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1].strip()
    assert key.startswith("flx_live_")
    assert key not in (project / ".flux" / "keys.db").read_bytes().decode("latin-1")

    server = dev_server_factory(project)
    client = server.client
    denied = client.post("/secret", json={})
    assert denied.status_code == 401
    assert denied.json()["error"] == "unauthorized"
    assert client.post("/secret", json={}, headers={"x-api-key": key + "x"}).status_code == 401
    allowed = client.post("/secret", json={}, headers={"x-api-key": key})
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["auth"] == {"type": "api_key", "key_name": "ci", "scope": "invoke"}

    statuses = [client.post("/open", json={}).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = client.post("/open", json={})
    assert limited.json()["error"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["ratelimit-remaining"] == "0"

    preflight = client.options("/secret", headers={"origin": "https://app.example.com",
                                                   "access-control-request-method": "POST"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    other = client.options("/secret", headers={"origin": "https://evil.example.com",
                                               "access-control-request-method": "POST"})
    assert "access-control-allow-origin" not in other.headers
    simple = client.post("/secret", json={}, headers={"x-api-key": key, "origin": "https://app.example.com"})
    assert simple.headers["access-control-allow-origin"] == "https://app.example.com"

    revoked = flux("keys", "revoke", "ci", "-C", str(project))
    assert revoked.returncode == 0, revoked.stderr
    assert client.post("/secret", json={}, headers={"x-api-key": key}).status_code == 401

    time.sleep(0.5)
    store = SqliteSpanStore(project / ".flux" / "traces.db")
    gateway = next(s for s in store.get_trace(allowed.headers["x-request-id"]) if s.kind == "gateway")
    assert gateway.attrs["auth.mode"] == "api_key"
    assert gateway.attrs["auth.key_name"] == "ci"
    assert gateway.attrs["auth.outcome"] == "allow"
    dumped = json.dumps([s.to_dict() for s in store.get_trace(allowed.headers["x-request-id"])])
    assert key not in dumped


def test_dashboard_refuses_a_foreign_host_header(project, dev_server_factory):
    server = dev_server_factory(project)
    assert server.client.get("/_flux/").status_code == 200
    rebound = server.client.get("/_flux/api/traces", headers={"host": "attacker.example.com"})
    assert rebound.status_code == 403


def test_jwt_with_token_scheme_optional_mode_and_a_cookie_set_by_the_function(tmp_path, dev_server_factory):
    """Issue #15 over HTTP: `Authorization: Token <jwt>`, an optional route, and a Response with cookies."""
    import jwt as pyjwt

    root = tmp_path / "tok"
    (root / "functions" / "feed").mkdir(parents=True)
    (root / "flux.json").write_text(json.dumps({"name": "tok", "auth": {"jwt": {
        "secret_name": "JWT_SECRET", "scheme": "Token", "issuer": "https://issuer.test"}}}))
    (root / "functions" / "feed" / "index.ts").write_text("""
        export default async function handler(input, ctx) {
          const body = { auth: ctx.auth, sawHeader: "authorization" in ctx.request.headers };
          const headers = new Headers({ "content-type": "application/json" });
          headers.append("set-cookie", `seen=${ctx.auth.type}; Path=/`);
          headers.append("set-cookie", "theme=dark; Path=/");
          return new Response(JSON.stringify(body), { status: 200, headers });
        }""")
    (root / "functions" / "feed" / "flux.json").write_text(
        json.dumps({"route": "/feed", "method": "GET", "auth": {"mode": "jwt", "optional": True}}))
    secret = "s" * 48
    assert flux("secrets", "set", "JWT_SECRET", "-C", str(root), input=f"{secret}\n").returncode == 0
    server = dev_server_factory(root)
    client = server.client

    anonymous = client.get("/feed")
    assert anonymous.status_code == 200, anonymous.text
    assert anonymous.json() == {"auth": {"type": "none"}, "sawHeader": False}
    assert anonymous.headers.get_list("set-cookie") == ["seen=none; Path=/", "theme=dark; Path=/"]

    token = pyjwt.encode({"sub": "u-42", "iss": "https://issuer.test", "exp": int(time.time()) + 300, "plan": "pro"},
                         secret, algorithm="HS256")
    known = client.get("/feed", headers={"authorization": f"Token {token}"})
    assert known.status_code == 200, known.text
    assert known.json()["auth"] == {"type": "jwt", "subject": "u-42",
                                    "claims": {"sub": "u-42", "iss": "https://issuer.test",
                                               "exp": known.json()["auth"]["claims"]["exp"], "plan": "pro"}}
    assert known.json()["sawHeader"] is True
    for bad in (f"Bearer {token}", "Token not-a-jwt", f"Token {token}x"):
        refused = client.get("/feed", headers={"authorization": bad})
        assert refused.status_code == 401 and refused.json()["error"] == "unauthorized", bad
