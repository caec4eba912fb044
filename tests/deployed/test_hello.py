"""hello through the whole chain: synth → moto → sandboxed Lambdas under awslambdaric → HTTP API front → HTTP."""

from __future__ import annotations

import re

import pytest

from tests.deployed.conftest import function_name, role_name

pytestmark = pytest.mark.xdist_group("deployed")


def test_hello_answers_through_the_http_api(api):
    response = api.post("/hello", json={"name": "Ada"})
    assert response.status_code == 200, response.text
    assert response.json()["message"] == "Hello, Ada!"
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    assert response.json()["requestId"] == response.headers["x-request-id"]
    assert response.headers["apigw-requestid"]


def test_hello_warm_invocation_reuses_the_environment(api, deployed):
    """The first call may be the cold one (this test may be the first to reach hello); the next three are warm."""
    name = function_name(deployed, "hello")
    assert api.post("/hello", json={"name": "first"}).status_code == 200
    metrics = deployed.lambdas.metrics[name]
    warm_before, cold_before = len(metrics.warm_ms), len(metrics.cold_start_ms)
    for _ in range(3):
        assert api.post("/hello", json={"name": "again"}).status_code == 200
    assert len(metrics.warm_ms) == warm_before + 3
    assert len(metrics.cold_start_ms) == cold_before


def test_fresh_cold_environments_serve_after_the_warm_ones_are_discarded(api, deployed):
    """What Lambda does after idling or a configuration change: new environments, INIT again.
    /limited is behind the authorizer (it has a rate limit), so both the authorizer and a runtime go cold."""
    limited = function_name(deployed, "limited")
    hello = function_name(deployed, "hello")
    authorizer = role_name(deployed, "authorizer")
    assert api.post("/hello", json={"name": "warm"}).status_code == 200
    names = (hello, authorizer, limited)
    cold_before = {n: len(deployed.lambdas.metrics[n].cold_start_ms) for n in names}
    for name in names:
        deployed.lambdas.discard_warm(name)
    assert api.post("/hello", json={"name": "cold"}).status_code == 200
    assert api.get("/limited", headers={"x-forwarded-for": "198.51.100.7"}).status_code in (200, 429)
    for name in names:
        assert len(deployed.lambdas.metrics[name].cold_start_ms) == cold_before[name] + 1
