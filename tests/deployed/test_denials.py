"""A denied request never starts Deno, and what it costs (its billed duration) is measured.

The authorizer soft-denies (401, 429 reach the runtime Lambda as a verdict in the
event); the runtime must answer them with the standard body before anything
expensive. Proof: a fresh execution environment whose first event is the denied
request has no ``deno`` process in its process tree, read from the host's ``/proc``
outside the environment's PID namespace (``Sandbox.processes``), which nothing inside
can fake. The same observation then sees Deno once an allowed request reaches the
same environment, so it can fail.

Billed duration, as Lambda bills an on-demand python3.12 function: the invoke's
duration, plus INIT for the cold environment that served it. Both go to
``tests/artifacts/deployed-metrics.json`` under ``scenarios.denied_requests``.
"""

from __future__ import annotations

import json
import math

import pytest

from tests.deployed.conftest import function_name
from tests.deployed.test_auth import standard_error

pytestmark = pytest.mark.xdist_group("deployed")


def only_environment(deployed, name: str):
    environments = deployed.lambdas.environments(name)
    assert len(environments) == 1, environments
    return environments[0]


def record(deployed, name: str, label: str, *, cold: bool) -> dict[str, float]:
    result = deployed.lambdas.metrics[name].results[-1]
    assert result.cold is cold, (label, result)
    billed = math.ceil(result.duration_ms + (result.init_ms if cold else 0.0))
    figure = {"invoke_ms": round(result.duration_ms, 1), "init_ms": round(result.init_ms, 1), "billed_ms": billed}
    deployed.lambdas.scenarios.setdefault("denied_requests", {})[label] = figure
    return figure


@pytest.fixture(scope="module")
def key(cli, deployed):
    done = cli("keys", "create", "--name", "denials", "--table", deployed.outputs["KeysTableName"], "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["key"]


def test_a_401_never_starts_deno_and_its_billed_duration_is_recorded(api, deployed, key):
    name = function_name(deployed, "whoami")
    deployed.lambdas.discard_warm(name)
    standard_error(api.get("/me"), 401, "unauthorized")  # the first event of a fresh environment
    environment = only_environment(deployed, name)
    assert "deno" not in environment.sandbox.processes(), environment.sandbox.processes()
    record(deployed, name, "401 cold", cold=True)
    standard_error(api.get("/me", headers={"x-api-key": "flx_live_" + "0" * 43}), 401, "unauthorized")
    assert "deno" not in environment.sandbox.processes()
    record(deployed, name, "401 warm", cold=False)
    allowed = api.get("/me", headers={"x-api-key": key})  # the observation can see Deno when it runs
    assert allowed.status_code == 200, allowed.text
    assert only_environment(deployed, name) is environment
    assert "deno" in environment.sandbox.processes(), environment.sandbox.processes()


def use_up_the_bucket(api) -> None:
    """Spend the caller's /limited bucket (2 per minute), whatever earlier scenarios left of it."""
    for _ in range(5):
        if api.get("/limited").status_code == 429:
            return
    raise AssertionError("/limited never answered 429")


def test_a_429_never_starts_deno_and_its_billed_duration_is_recorded(api, deployed):
    name = function_name(deployed, "limited")
    # The authorizer (warm) decides before the runtime's cold start, so the bucket is still empty then;
    # a token may come back during a slow cold start, hence the retries.
    for _ in range(3):
        use_up_the_bucket(api)
        deployed.lambdas.discard_warm(name)
        denied = api.get("/limited")
        if denied.status_code == 429:
            break
    standard_error(denied, 429, "rate_limited")
    environment = only_environment(deployed, name)
    assert "deno" not in environment.sandbox.processes(), environment.sandbox.processes()
    record(deployed, name, "429 cold", cold=True)
    use_up_the_bucket(api)  # the last of these is a warm 429
    record(deployed, name, "429 warm", cold=False)
