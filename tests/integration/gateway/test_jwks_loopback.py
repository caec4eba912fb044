"""JWT through a real JWKS endpoint on 127.0.0.1: valid tokens, key rotation, an unreachable issuer.

A small HTTP server thread publishes the JWKS; the verifier uses the default
httpx fetcher, exactly as the authorizer does in AWS, with an injected
monotonic clock so "after the refresh interval" needs no sleeping.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from functions.gateway.authorizer import Authorizer
from functions.gateway.errors import CredentialRejected
from functions.gateway.jwt_auth import JwtVerifier
from functions.gateway.keys_sqlite import SqliteApiKeyStore
from functions.gateway.ratelimit_local import LocalRateLimiter
from functions.gateway.verdict import Verdict
from functions.shared.errors import error_response
from functions.shared.manifest import FunctionConfig, FunctionSpec, JwtConfig, Project, ProjectConfig

ISSUER = "https://issuer.example"


class JwksServer:
    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                body = json.dumps({"keys": server.keys}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def publish(self, private_key: Any, kid: str) -> None:
        algorithm = RSAAlgorithm if isinstance(private_key, rsa.RSAPrivateKey) else ECAlgorithm
        jwk = json.loads(algorithm.to_jwk(private_key.public_key()))
        jwk.update(kid=kid, use="sig")
        self.keys.append(jwk)


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


class Mono:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def token(key: Any, kid: str, alg: str = "RS256", **claims: Any) -> str:
    body = {"sub": "user-7", "iss": ISSUER, "aud": "shop", "exp": int(time.time()) + 300, "iat": int(time.time())}
    body.update(claims)
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


def verifier_for(url: str, clock: Mono, refresh_s: int = 60) -> JwtVerifier:
    config = JwtConfig(issuer=ISSUER, audience="shop", jwks_url=url, algorithms=["RS256", "ES256"],
                       jwks_refresh_s=refresh_s)
    return JwtVerifier.from_config(config, clock=clock)


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {"k1": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "k2": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "e1": ec.generate_private_key(ec.SECP256R1())}


def test_valid_rs256_and_es256_from_a_loopback_jwks(jwks: JwksServer, keys: dict[str, Any]) -> None:
    jwks.publish(keys["k1"], "k1")
    jwks.publish(keys["e1"], "e1")
    verifier = verifier_for(jwks.url, Mono())
    assert verifier.verify(token(keys["k1"], "k1"))["sub"] == "user-7"
    assert verifier.verify(token(keys["e1"], "e1", alg="ES256"))["sub"] == "user-7"
    assert jwks.requests == 1  # one fetch, then the cache


def test_full_authorizer_answers_allow_then_401(jwks: JwksServer, keys: dict[str, Any], tmp_path: Any) -> None:
    jwks.publish(keys["k1"], "k1")
    project_config = ProjectConfig.model_validate(
        {"name": "shop", "auth": {"default": "jwt", "jwt": {"jwks_url": jwks.url, "issuer": ISSUER,
                                                            "audience": "shop"}}})
    fn = FunctionConfig.model_validate({"route": "/me", "method": "GET"})
    spec = FunctionSpec(name="me", directory=tmp_path, entry=tmp_path / "index.ts", config=fn, route="/me",
                        method="GET", auth="jwt", rate_limit=None)
    project = Project(root=tmp_path, config=project_config, functions={"me": spec})
    authorizer = Authorizer(project, SqliteApiKeyStore(tmp_path / "keys.db"), LocalRateLimiter(),
                            JwtVerifier.from_config(project_config.auth.jwt))

    def call(bearer: str) -> dict[str, Any]:
        return authorizer.authorize({"version": "2.0", "type": "REQUEST", "routeKey": "GET /me",
                                     "headers": {"authorization": f"Bearer {bearer}"},
                                     "requestContext": {"http": {"method": "GET", "path": "/me",
                                                                 "sourceIp": "127.0.0.1"}}})

    allowed = call(token(keys["k1"], "k1"))["context"]
    assert allowed["outcome"] == "allow" and allowed["subject"] == "user-7"
    denied = call(token(keys["k2"], "k1"))["context"]  # right kid, wrong key
    assert error_response(Verdict.from_context(denied).denial(), "r")["statusCode"] == 401


def test_key_rotation_after_the_cache_filled(jwks: JwksServer, keys: dict[str, Any]) -> None:
    jwks.publish(keys["k1"], "k1")
    clock = Mono()
    verifier = verifier_for(jwks.url, clock, refresh_s=60)
    assert verifier.verify(token(keys["k1"], "k1"))["sub"] == "user-7"
    jwks.publish(keys["k2"], "k2")  # the issuer starts signing with a new key
    rotated = token(keys["k2"], "k2")
    clock.t += 1
    with pytest.raises(CredentialRejected):
        verifier.verify(rotated)  # unknown kid, but the last fetch was 1 s ago: no refetch
    assert jwks.requests == 1
    clock.t += 60
    assert verifier.verify(rotated)["sub"] == "user-7"  # one refetch picks up k2
    assert jwks.requests == 2
    assert verifier.verify(token(keys["k1"], "k1"))["sub"] == "user-7"  # k1 is still published
    for i in range(10):
        with pytest.raises(CredentialRejected):
            verifier.verify(token(keys["k1"], f"bogus-{i}"))
    assert jwks.requests == 2  # random kids cannot make us hammer the issuer


def test_unreachable_jwks_with_an_empty_cache_fails_closed(keys: dict[str, Any]) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    verifier = verifier_for(f"http://127.0.0.1:{port}/jwks.json", Mono())
    started = time.perf_counter()
    with pytest.raises(CredentialRejected):
        verifier.verify(token(keys["k1"], "k1"))
    assert time.perf_counter() - started < 3  # short timeout, no hanging request


def test_jwks_that_is_not_json_fails_closed(keys: dict[str, Any]) -> None:
    class Broken(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>maintenance</html>")

        def log_message(self, *args: Any) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Broken)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        verifier = verifier_for(f"http://127.0.0.1:{httpd.server_address[1]}/jwks.json", Mono())
        with pytest.raises(CredentialRejected):
            verifier.verify(token(keys["k1"], "k1"))
    finally:
        httpd.shutdown()
        httpd.server_close()
