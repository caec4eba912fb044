"""Added latency of the gateway authorizer per request, locally (the ``flux dev`` wiring).

Builds a throwaway project, the SQLite key store under its ``.flux/``, the
in-process rate limiter and an HS256 verifier, then times ``authorize(event)``
one call at a time. The rate limit is set high enough that every call is
admitted, so each one pays the whole path: key hash + SQLite lookup + GCRA.

    .venv/bin/python bench/gateway_authorizer.py [--calls 10000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jwt

from functions.gateway.authorizer import Authorizer
from functions.gateway.jwt_auth import JwtVerifier
from functions.gateway.keys_sqlite import open_project_key_store
from functions.gateway.ratelimit_local import LocalRateLimiter
from functions.shared.apigw import HttpRequest, build_event
from functions.shared.manifest import load_project

LIMIT = {"requests": 1_000_000, "per_seconds": 1}
SECRET = "b" * 64


class Secrets:
    def get(self, name: str) -> str | None:
        return SECRET


def write_project(root: Path) -> None:
    (root / "flux.json").write_text(json.dumps({
        "name": "bench", "auth": {"jwt": {"secret_name": "JWT_SECRET", "algorithms": ["HS256"]}}}))
    for name, config in {"create_order": {"route": "/orders", "method": "POST", "auth": "api_key", "rate_limit": LIMIT},
                         "health": {"route": "/health", "method": "GET", "auth": "none", "rate_limit": LIMIT},
                         "me": {"route": "/me", "method": "GET", "auth": "jwt", "rate_limit": LIMIT}}.items():
        folder = root / "functions" / name
        folder.mkdir(parents=True)
        (folder / "index.ts").write_text("export default async () => ({});\n")
        (folder / "flux.json").write_text(json.dumps(config))


def measure(authorizer: Authorizer, event: dict[str, Any], calls: int) -> dict[str, float]:
    for _ in range(min(500, calls)):  # warm up caches and the SQLite connection
        authorizer.authorize(event)
    samples = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        result = authorizer.authorize(event)
        samples.append(time.perf_counter_ns() - started)
        if result["context"]["outcome"] != "allow":
            raise SystemExit(f"unexpected refusal: {result}")
    samples.sort()
    return {"median_us": statistics.median(samples) / 1000, "p99_us": samples[int(len(samples) * 0.99)] / 1000,
            "mean_us": statistics.fmean(samples) / 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_project(root)
        project = load_project(root)
        keys = open_project_key_store(root)
        _, key = keys.create("bench")
        verifier = JwtVerifier.from_config(project.config.auth.jwt, secrets=Secrets())
        authorizer = Authorizer(project, keys, LocalRateLimiter(), verifier)
        token = jwt.encode({"sub": "u1", "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")
        cases = {
            "api_key + rate limit (SQLite keys)": build_event(
                HttpRequest("POST", "/orders", headers=(("x-api-key", key),)), route_key="POST /orders"),
            "none + rate limit (by IP)": build_event(HttpRequest("GET", "/health"), route_key="GET /health"),
            "jwt HS256 + rate limit": build_event(
                HttpRequest("GET", "/me", headers=(("authorization", f"Bearer {token}"),)), route_key="GET /me"),
        }
        print(f"authorize() latency over {args.calls} calls each (Python {sys.version.split()[0]})")
        for name, event in cases.items():
            stats = measure(authorizer, event, args.calls)
            print(f"  {name:<38} median {stats['median_us']:7.1f} µs   p99 {stats['p99_us']:7.1f} µs   "
                  f"mean {stats['mean_us']:7.1f} µs")


if __name__ == "__main__":
    main()
