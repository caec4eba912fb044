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
    name = function_name(deployed, "hello")
    before = len(deployed.lambdas.metrics[name].warm_ms)
    for _ in range(3):
        assert api.post("/hello", json={"name": "again"}).status_code == 200
    assert len(deployed.lambdas.metrics[name].warm_ms) >= before + 3


def test_fresh_cold_environments_serve_after_the_warm_ones_are_discarded(api, deployed):
    """What Lambda does after idling or a configuration change: new environments, INIT again."""
    hello = function_name(deployed, "hello")
    authorizer = role_name(deployed, "authorizer")
    assert api.post("/hello", json={"name": "warm"}).status_code == 200
    cold_before = {n: len(deployed.lambdas.metrics[n].cold_start_ms) for n in (hello, authorizer)}
    deployed.lambdas.discard_warm(hello)
    deployed.lambdas.discard_warm(authorizer)
    response = api.post("/hello", json={"name": "cold"})
    assert response.status_code == 200, response.text
    for name in (hello, authorizer):
        assert len(deployed.lambdas.metrics[name].cold_start_ms) == cold_before[name] + 1
