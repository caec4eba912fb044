"""JWT verification: the attack list, key sources, JWKS caching, and the 401 body the runtime ends up sending."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from functions.gateway.authorizer import UNAUTHORIZED_MESSAGE, Authorizer
from functions.gateway.errors import CredentialRejected
from functions.gateway.jwt_auth import JwksCache, JwtVerifier
from functions.gateway.ratelimit_local import LocalRateLimiter
from functions.gateway.verdict import Verdict
from functions.shared.errors import error_response
from functions.shared.manifest import JwtConfig

ISSUER = "https://issuer.example"
AUDIENCE = "flux-api"
JWKS_URL = "https://issuer.example/.well-known/jwks.json"
HS_SECRET = "s" * 64


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """Build a token by hand (PyJWT refuses to make most of the bad ones)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{b64(signature)}"


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"sub": "user-1", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now - 5, "exp": now + 300}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture
def fetcher(helpers: Any, rsa_key: rsa.RSAPrivateKey, ec_key: Any) -> Any:
    return helpers.FakeJwksFetcher([helpers.public_jwk(rsa_key, "k1", "RS256"),
                                    helpers.public_jwk(ec_key, "e1", "ES256")])


@pytest.fixture
def mono() -> Any:
    class Mono:
        t = 1000.0

        def __call__(self) -> float:
            return self.t

    return Mono()


@pytest.fixture
def verifier(fetcher: Any, mono: Any) -> JwtVerifier:
    config = JwtConfig(issuer=ISSUER, audience=AUDIENCE, jwks_url=JWKS_URL, algorithms=["RS256", "ES256", "PS256"],
                       jwks_refresh_s=300)
    return JwtVerifier.from_config(config, fetcher=fetcher, clock=mono)


def rs256(key: rsa.RSAPrivateKey, kid: str = "k1", **claim_overrides: Any) -> str:
    return jwt.encode(claims(**claim_overrides), key, algorithm="RS256", headers={"kid": kid})


def test_valid_rs256_and_es256_tokens_verify(verifier: JwtVerifier, rsa_key: Any, ec_key: Any) -> None:
    assert verifier.verify(rs256(rsa_key))["sub"] == "user-1"
    token = jwt.encode(claims(sub="user-2"), ec_key, algorithm="ES256", headers={"kid": "e1"})
    assert verifier.verify(token)["sub"] == "user-2"


def test_leeway_admits_a_token_that_just_expired(verifier: JwtVerifier, rsa_key: Any) -> None:
    assert verifier.verify(rs256(rsa_key, exp=int(time.time()) - 10))["sub"] == "user-1"


def _attacks(rsa_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> dict[str, str]:
    now = int(time.time())
    public_pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    good = rs256(rsa_key)
    head, body, _sig = good.split(".")
    evil_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(other_key.public_key()))
    return {
        "alg none": forge({"alg": "none", "kid": "k1"}, claims()),
        "alg None": forge({"alg": "None", "kid": "k1"}, claims()),
        "alg none with signature": forge({"alg": "none", "kid": "k1"}, claims(), lambda m: b"x"),
        "RS256 re-signed HS256 with the public key": forge(
            {"alg": "HS256", "kid": "k1", "typ": "JWT"}, claims(),
            lambda m: hmac.new(public_pem, m, hashlib.sha256).digest()),
        "expired": rs256(rsa_key, exp=now - 3600),
        "nbf in the future": rs256(rsa_key, nbf=now + 3600),
        "iat in the future": rs256(rsa_key, iat=now + 3600),
        "wrong iss": rs256(rsa_key, iss="https://evil.example"),
        "missing iss": rs256(rsa_key, iss=None),
        "wrong aud": rs256(rsa_key, aud="someone-else"),
        "missing aud": rs256(rsa_key, aud=None),
        "unknown kid": rs256(rsa_key, kid="k-unknown"),
        "kid with ../": rs256(rsa_key, kid="../../../../etc/passwd"),
        "kid with a URL": rs256(rsa_key, kid="https://evil.example/jwks.json"),
        "no kid": jwt.encode(claims(), rsa_key, algorithm="RS256"),
        "no exp": rs256(rsa_key, exp=None),
        "exp not a number": rs256(rsa_key, exp="tomorrow"),
        "signed by another key with our kid": rs256(other_key),
        "jku pointing at the attacker": jwt.encode(claims(), other_key, algorithm="RS256",
                                                   headers={"kid": "attacker", "jku": "https://evil.example/j"}),
        "embedded jwk header": jwt.encode(claims(), other_key, algorithm="RS256",
                                          headers={"kid": "k1", "jwk": evil_jwk}),
        "tampered payload": f"{head}.{b64(json.dumps(claims(sub='admin')).encode())}.{_sig}",
        "stripped signature": f"{head}.{body}.",
        "ES256 header on an RSA kid": forge({"alg": "ES256", "kid": "k1"}, claims(), lambda m: b"\x00" * 64),
        "PS256 on a key pinned to RS256": jwt.encode(claims(), rsa_key, algorithm="PS256", headers={"kid": "k1"}),
        "not a JWT": "definitely-not-a-token",
        "three dots of nothing": "..",
        "garbage base64": "eyJ!!!.eyJ###.sig",
        "huge": "a" * 20_000,
        "header not an object": f"{b64(b'[1,2]')}.{body}.{_sig}",
    }


def test_every_attack_is_rejected_without_raising_anything_else(verifier: JwtVerifier, rsa_key: Any,
                                                                 rsa_key_2: Any, fetcher: Any) -> None:
    for name, token in _attacks(rsa_key, rsa_key_2).items():
        with pytest.raises(CredentialRejected):
            verifier.verify(token)
        assert set(fetcher.urls) <= {JWKS_URL}, name  # never a URL the token chose
    assert fetcher.urls  # the kid lookups did consult the configured JWKS


def test_attacks_become_401_with_the_standard_body(helpers: Any, verifier: JwtVerifier, rsa_key: Any,
                                                   rsa_key_2: Any) -> None:
    project = helpers.build_project({"orders": {"route": "/orders", "method": "GET", "auth": "jwt",
                                                "rate_limit": {"requests": 1000, "per_seconds": 60}}},
                                    auth={"default": "none", "jwt": {"jwks_url": JWKS_URL, "issuer": ISSUER}})
    authorizer = Authorizer(project, helpers.MemoryKeyStore(), LocalRateLimiter(), verifier)
    messages = set()
    for name, token in _attacks(rsa_key, rsa_key_2).items():
        result = authorizer.authorize(helpers.request_event("GET /orders", {"authorization": f"Bearer {token}"}))
        assert result["isAuthorized"] is True, name  # soft deny: the runtime answers
        context = result["context"]
        assert context["outcome"] == "deny" and context["error"] == "unauthorized", name
        response = error_response(Verdict.from_context(context).denial(), "rid")
        assert response["statusCode"] == 401, name
        body = json.loads(response["body"])
        assert body == {"error": "unauthorized", "message": UNAUTHORIZED_MESSAGE, "request_id": "rid"}, name
        messages.add(context["message"])
        assert token not in json.dumps(result) or len(token) < 4, name
    assert messages == {UNAUTHORIZED_MESSAGE}  # the same words whatever was wrong
    ok = authorizer.authorize(helpers.request_event("GET /orders", {"authorization": f"Bearer {rs256(rsa_key)}"}))
    assert ok["context"]["outcome"] == "allow"
    assert ok["context"]["subject"] == "user-1"
    assert json.loads(ok["context"]["claims"])["iss"] == ISSUER


def test_unknown_kids_refetch_at_most_once_per_interval(verifier: JwtVerifier, rsa_key: Any, fetcher: Any,
                                                        mono: Any) -> None:
    verifier.verify(rs256(rsa_key))
    assert len(fetcher.urls) == 1
    for i in range(20):
        with pytest.raises(CredentialRejected):
            verifier.verify(rs256(rsa_key, kid=f"random-{i}"))
    assert len(fetcher.urls) == 1
    mono.t += 300
    with pytest.raises(CredentialRejected):
        verifier.verify(rs256(rsa_key, kid="random-x"))
    assert len(fetcher.urls) == 2


def test_key_rotation_is_picked_up_after_the_refresh_interval(helpers: Any, verifier: JwtVerifier, rsa_key: Any,
                                                              rsa_key_2: Any, fetcher: Any, mono: Any) -> None:
    verifier.verify(rs256(rsa_key))  # cache filled with k1
    fetcher.keys = [helpers.public_jwk(rsa_key_2, "k2", "RS256")]  # issuer rotates: k1 gone, k2 in
    new_token = rs256(rsa_key_2, kid="k2")
    mono.t += 1
    with pytest.raises(CredentialRejected):
        verifier.verify(new_token)  # within the interval: no refetch yet
    mono.t += 300
    assert verifier.verify(new_token)["sub"] == "user-1"
    with pytest.raises(CredentialRejected):
        verifier.verify(rs256(rsa_key))  # the retired key no longer verifies


def test_unreachable_jwks_with_empty_cache_fails_closed(helpers: Any, rsa_key: Any, mono: Any) -> None:
    fetcher = helpers.FakeJwksFetcher([helpers.public_jwk(rsa_key, "k1")])
    fetcher.fail = True
    cache = JwksCache(JWKS_URL, fetcher, refresh_s=300, clock=mono, retry_after_failure_s=5)
    verifier = JwtVerifier(JwtConfig(jwks_url=JWKS_URL), jwks=cache, clock=mono)
    with pytest.raises(CredentialRejected):
        verifier.verify(rs256(rsa_key))
    with pytest.raises(CredentialRejected):
        verifier.verify(rs256(rsa_key))
    assert len(fetcher.urls) == 1  # failures are retried after a pause, not on every request
    fetcher.fail = False
    mono.t += 5
    assert verifier.verify(rs256(rsa_key))["sub"] == "user-1"


def test_unreachable_jwks_keeps_serving_cached_keys(verifier: JwtVerifier, rsa_key: Any, fetcher: Any,
                                                    mono: Any) -> None:
    verifier.verify(rs256(rsa_key))
    fetcher.fail = True
    mono.t += 10_000  # cache is stale, refresh fails
    assert verifier.verify(rs256(rsa_key))["sub"] == "user-1"
    assert len(fetcher.urls) == 2


def test_jwks_entries_that_are_not_signing_keys_are_ignored(helpers: Any, rsa_key: Any, mono: Any) -> None:
    enc = helpers.public_jwk(rsa_key, "k1")
    enc["use"] = "enc"
    fetcher = helpers.FakeJwksFetcher([enc, {"kty": "oct", "kid": "h", "k": b64(b"secret")}, "junk"])
    verifier = JwtVerifier.from_config(JwtConfig(jwks_url=JWKS_URL), fetcher=fetcher, clock=mono)
    with pytest.raises(CredentialRejected):
        verifier.verify(rs256(rsa_key))
    hs = jwt.encode(claims(), "secret" * 8, algorithm="HS256", headers={"kid": "h"})
    with pytest.raises(CredentialRejected):
        verifier.verify(hs)


def hs_verifier(helpers: Any, secret: str | None, mono: Any) -> tuple[JwtVerifier, Any]:
    secrets = helpers.MemorySecrets({"JWT_SECRET": secret} if secret is not None else {})
    config = JwtConfig(secret_name="JWT_SECRET", algorithms=["HS256"], issuer=ISSUER)
    return JwtVerifier.from_config(config, secrets=secrets, clock=mono), secrets


def test_hs256_with_a_secret_from_the_secrets_store(helpers: Any, rsa_key: Any, mono: Any) -> None:
    verifier, secrets = hs_verifier(helpers, HS_SECRET, mono)
    token = jwt.encode(claims(), HS_SECRET, algorithm="HS256")
    assert verifier.verify(token)["sub"] == "user-1"
    verifier.verify(token)
    assert secrets.reads == 1  # cached
    for bad in (jwt.encode(claims(), "t" * 48, algorithm="HS256"),
                jwt.encode(claims(), HS_SECRET, algorithm="HS512"),
                rs256(rsa_key),
                forge({"alg": "none"}, claims()),
                jwt.encode(claims(exp=None), HS_SECRET, algorithm="HS256")):
        with pytest.raises(CredentialRejected):
            verifier.verify(bad)


def test_hs256_secret_rotation_is_read_after_the_refresh_interval(helpers: Any, mono: Any) -> None:
    verifier, secrets = hs_verifier(helpers, HS_SECRET, mono)
    verifier.verify(jwt.encode(claims(), HS_SECRET, algorithm="HS256"))
    secrets.values["JWT_SECRET"] = "n" * 48
    new = jwt.encode(claims(), "n" * 48, algorithm="HS256")
    with pytest.raises(CredentialRejected):
        verifier.verify(new)
    mono.t += 300
    assert verifier.verify(new)["sub"] == "user-1"


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("secret", [None, "", "short-secret"])
def test_missing_or_weak_secret_refuses_every_token(helpers: Any, mono: Any, secret: str | None) -> None:
    verifier, _ = hs_verifier(helpers, secret, mono)
    token = jwt.encode(claims(), "short-secret", algorithm="HS256") if secret == "short-secret" else \
        forge({"alg": "HS256"}, claims(), lambda m: hmac.new(b"", m, hashlib.sha256).digest())
    with pytest.raises(CredentialRejected):
        verifier.verify(token)


def test_audience_is_not_required_when_not_configured(helpers: Any, rsa_key: Any, mono: Any) -> None:
    fetcher = helpers.FakeJwksFetcher([helpers.public_jwk(rsa_key, "k1")])
    verifier = JwtVerifier.from_config(JwtConfig(jwks_url=JWKS_URL), fetcher=fetcher, clock=mono)
    assert verifier.verify(rs256(rsa_key, aud="anything", iss="anyone"))["sub"] == "user-1"
    assert verifier.verify(rs256(rsa_key, aud=None))["sub"] == "user-1"
