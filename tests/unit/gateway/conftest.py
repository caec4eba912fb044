"""Pure helpers for the gateway unit tests: in-memory adapters, a fake clock, signing keys, small projects."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from functions.gateway.errors import KeyNameTaken
from functions.gateway.keys import ApiKey, ApiKeyStore
from functions.shared.manifest import FunctionConfig, FunctionSpec, Project, ProjectConfig, resolve_auth
from functions.shared.secrets import MemorySecretsStore as MemorySecrets


class FakeClock:
    """Seconds as a float; ``advance`` moves time on. Starts at a round number like a real epoch."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemoryKeyStore(ApiKeyStore):
    """The ApiKeyStore primitives over a dict, to test the port's own logic without I/O."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.records: dict[str, ApiKey] = {}
        self.touches = 0

    def insert(self, record: ApiKey) -> None:
        if record.name in self.records:
            raise KeyNameTaken(record.name)
        self.records[record.name] = record

    def get_by_hash(self, key_hash: str) -> ApiKey | None:
        return next((r for r in self.records.values() if r.key_hash == key_hash), None)

    def get_by_name(self, name: str) -> ApiKey | None:
        return self.records.get(name)

    def list_all(self) -> list[ApiKey]:
        return list(self.records.values())

    def set_revoked(self, name: str) -> bool:
        if name not in self.records:
            return False
        record = self.records[name]
        self.records[name] = ApiKey(record.name, record.prefix, record.key_hash, record.scope, record.created_at,
                                    record.last_used_at, True)
        return True

    def touch(self, record: ApiKey, used_at: float) -> None:
        self.touches += 1
        current = self.records[record.name]
        self.records[record.name] = ApiKey(current.name, current.prefix, current.key_hash, current.scope,
                                           current.created_at, used_at, current.revoked)




class FakeJwksFetcher:
    """Serves a JWKS document from memory; ``fail`` makes it unreachable; records every URL asked for."""

    def __init__(self, keys: list[dict[str, Any]] | None = None) -> None:
        self.keys = list(keys or [])
        self.fail = False
        self.urls: list[str] = []

    def fetch(self, url: str) -> dict[str, Any]:
        from functions.gateway.errors import JwksUnavailable

        self.urls.append(url)
        if self.fail:
            raise JwksUnavailable("connection refused")
        return {"keys": [dict(k) if isinstance(k, dict) else k for k in self.keys]}


def public_jwk(private_key: Any, kid: str, alg: str | None = None) -> dict[str, Any]:
    algorithm = RSAAlgorithm if isinstance(private_key, rsa.RSAPrivateKey) else ECAlgorithm
    jwk = json.loads(algorithm.to_jwk(private_key.public_key()))
    jwk["kid"] = kid
    jwk["use"] = "sig"
    if alg:
        jwk["alg"] = alg
    return jwk


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def rsa_key_2() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def build_project(functions: dict[str, dict[str, Any]], **project: Any) -> Project:
    """A Project without touching the disk (the loader's resolution of defaults, done by hand)."""
    config = ProjectConfig.model_validate({"name": "shop", **project})
    root = Path("/nonexistent/shop")
    specs = {}
    for name, raw in functions.items():
        fn = FunctionConfig.model_validate(raw)
        specs[name] = FunctionSpec(name=name, directory=root / "functions" / name,
                                   entry=root / "functions" / name / "index.ts", config=fn,
                                   route=fn.route or f"/{name}", method=fn.method,
                                   auth=resolve_auth(fn.auth, config.auth.default)[0],
                                   auth_optional=resolve_auth(fn.auth, config.auth.default)[1],
                                   rate_limit=fn.rate_limit or config.rate_limit)
    return Project(root=root, config=config, functions=specs)


def request_event(route_key: str, headers: dict[str, str] | None = None, source_ip: str = "203.0.113.7"
                  ) -> dict[str, Any]:
    """A minimal REQUEST authorizer event (payload 2.0) for ``route_key``."""
    method, _, path = route_key.partition(" ")
    method, path = (method, path) if path else ("GET", "/anything")
    return {
        "version": "2.0", "type": "REQUEST",
        "routeArn": f"arn:aws:execute-api:us-east-1:123456789012:abcdef123/$default/{method}{path}",
        "identitySource": [], "routeKey": route_key, "rawPath": path, "rawQueryString": "",
        "headers": dict(headers or {}),
        "requestContext": {"http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                    "sourceIp": source_ip, "userAgent": "pytest"},
                           "routeKey": route_key, "stage": "$default", "requestId": "req-1"},
    }


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def helpers() -> Any:
    """Gives tests access to the classes and builders above (conftest modules are not importable)."""

    class _Helpers:
        FakeClock = FakeClock
        MemoryKeyStore = MemoryKeyStore
        MemorySecrets = MemorySecrets
        FakeJwksFetcher = FakeJwksFetcher
        public_jwk = staticmethod(public_jwk)
        build_project = staticmethod(build_project)
        request_event = staticmethod(request_event)

    return _Helpers
