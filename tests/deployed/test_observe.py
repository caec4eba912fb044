"""The hosted observability API behind the emulated HTTP API, read with `flux login` + `flux trace|why|logs`."""

from __future__ import annotations

import json

import pytest

from tests.deployed.conftest import wait_for

pytestmark = pytest.mark.xdist_group("deployed")


@pytest.fixture(scope="module")
def logged_in(cli, deployed, api, admin_key):
    key = admin_key
    api.get("/_flux/api/traces", headers={"x-api-key": key})  # the observability Lambda's cold start
    login = cli("login", "--api-url", deployed.outputs["ApiUrl"], "--key", key)
    assert login.returncode == 0, f"flux login failed:\n{login.stdout}\n{login.stderr}"
    return key


def trace_of(api, key: str, trace_id: str, at_least: int) -> dict:
    def complete() -> dict | None:
        response = api.get(f"/_flux/api/traces/{trace_id}", headers={"x-api-key": key})
        return response.json() if response.status_code == 200 and len(response.json()["spans"]) >= at_least else None

    return wait_for(complete, timeout=30, interval=0.5)


def test_observability_api_needs_an_admin_key(api):
    response = api.get("/_flux/api/traces")
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "unauthorized"


def test_concurrent_n_plus_one_report_and_its_trace_through_the_cli(api, logged_in, cli, migrated_stage):
    response = api.get("/reports/orders-concurrent")
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    trace = trace_of(api, logged_in, request_id, at_least=5)
    assert trace["n1_warnings"] and trace["n1_warnings"][0]["table"] == "order_items"
    assert trace["n1_warnings"][0]["concurrent"] is True
    shown = cli("trace", request_id)
    assert shown.returncode == 0, shown.stderr
    assert "GET /reports/orders-concurrent" in shown.stdout, shown.stdout
    as_json = cli("trace", request_id, "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert {s["kind"] for s in json.loads(as_json.stdout)["spans"]} >= {"gateway", "function", "db"}


def test_why_and_logs_through_the_cli(api, logged_in, cli, migrated_stage):
    hello = api.post("/hello", json={"name": "Logs"})
    request_id = hello.headers["x-request-id"]
    trace_of(api, logged_in, request_id, at_least=2)
    logs = cli("logs", "--request-id", request_id, "--json")
    assert logs.returncode == 0, logs.stderr
    assert "saying hello" in logs.stdout
    crashed = api.post("/orders", json={"user_id": 1, "items": [{"product_id": 999999, "quantity": 1}]})
    assert crashed.status_code == 404, crashed.text
    trace_of(api, logged_in, crashed.headers["x-request-id"], at_least=2)
    why = cli("why", crashed.headers["x-request-id"])
    assert why.returncode == 0, why.stderr
    assert "functions/create_order/index.ts" in why.stdout, why.stdout
