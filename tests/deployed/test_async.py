"""Async functions on the emulated stack: 202 at once, the worker Lambda behind the SQS event source
mapping runs the job in the same trace, and a failing job reaches the DLQ after its attempts, from
which `flux queue dlq list|replay --stage dev` run it again in its original trace."""

from __future__ import annotations

import json

import pytest

from tests.deployed.conftest import wait_for

pytestmark = pytest.mark.xdist_group("deployed")


def hosted_trace(api, admin_key: str, trace_id: str) -> dict:
    response = api.get(f"/_flux/api/traces/{trace_id}", headers={"x-api-key": admin_key})
    return response.json() if response.status_code == 200 else {}


def test_async_function_answers_202_and_the_worker_runs_it_in_the_same_trace(api, admin_key, migrated_stage):
    response = api.post("/flaky_webhook", json={"webhook_id": "deployed-ok", "fail_times": 0})
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"request_id", "job_id"}
    assert body["request_id"] == response.headers["x-request-id"]

    def ran() -> dict | None:
        trace = hosted_trace(api, admin_key, body["request_id"])
        names = [s["name"] for s in trace.get("spans", [])]
        return trace if "flaky_webhook" in names and "async → flaky_webhook" in names else None

    trace = wait_for(ran, timeout=90, interval=1)
    by_id = {s["span_id"]: s for s in trace["spans"]}
    worker = next(s for s in trace["spans"] if s["kind"] == "function" and s["name"] == "flaky_webhook")
    attempt = by_id[worker["parent_span_id"]]
    assert attempt["kind"] == "queue" and attempt["attrs"]["attempt"] == 1
    assert attempt["attrs"]["outcome"] == "ok"


def test_failing_job_reaches_the_dlq_and_replay_runs_it_in_its_trace(api, admin_key, cli, project, migrated_stage,
                                                                     deployed):
    response = api.post("/flaky_webhook", json={"webhook_id": "deployed-dlq", "fail_times": 3})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]

    def dead() -> dict | None:
        listed = cli("queue", "dlq", "list", "--stage", "dev", "-C", str(project), "--json")
        assert listed.returncode == 0, f"flux queue dlq list --stage dev failed:\n{listed.stdout}\n{listed.stderr}"
        return next((e for e in json.loads(listed.stdout or "[]") if e["id"] == job_id), None)

    entry = wait_for(dead, timeout=120, interval=2)
    assert entry["function"] == "flaky_webhook"
    assert entry["attempts"] == 3
    assert entry["trace_id"] == response.headers["x-request-id"]
    mapping = next(m for m in deployed.mappings if "flaky" in m.queue_url)
    assert mapping.failures_reported, "the worker never reported a partial batch failure"
    replayed = cli("queue", "dlq", "replay", job_id, "--stage", "dev", "-C", str(project), "--json")
    assert replayed.returncode == 0, f"replay failed:\n{replayed.stdout}\n{replayed.stderr}"
    assert json.loads(replayed.stdout)["trace_id"] == entry["trace_id"]

    def delivered() -> bool:
        spans = hosted_trace(api, admin_key, entry["trace_id"]).get("spans", [])
        return any(s["kind"] == "queue" and s["attrs"].get("outcome") == "ok" for s in spans)

    wait_for(delivered, timeout=90, interval=1)
    # The operator's view of a dead job names its error, as `flux queue dlq list` does locally.
    assert "endpoint unavailable" in entry["last_error"], entry
