"""FIFO order per message group on the emulated stack (issue #12): an ordered async function
(``ordering: {"group_by": "account"}``) gets an SQS FIFO queue, and the worker Lambda behind its event
source mapping must run each group's jobs in enqueue order, a failed job holding its group until its
retry succeeds (functions/queue_consumer/consumer.py: the first failure in a group stops that group;
README: "run in order per group (FIFO)"), while another group goes on.

The jobs record each attempt in ``ordered_runs`` (tests/deployed/project/schema/910_ordered_runs.sql),
read back through the HTTP front (``GET /ordered_runs/{account}``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.deployed.conftest import function_name, wait_for

pytestmark = pytest.mark.xdist_group("deployed")

SEQUENCE = range(1, 6)


def runs(api, account: str) -> list[dict]:
    response = api.get(f"/ordered_runs/{account}")
    assert response.status_code == 200, response.text
    return response.json()["runs"]


def ordered_mapping(deployed):
    """The event source mapping whose target is ordered_step's worker Lambda (found from the template's wiring)."""
    worker = function_name(deployed, "ordered_step", entry="worker")
    return next(m for m in deployed.mappings if deployed.lambdas.find(m.function).name == worker)


def test_ordered_function_gets_a_fifo_queue(deployed):
    mapping = ordered_mapping(deployed)
    assert mapping.queue_url.endswith(".fifo"), mapping.queue_url
    assert mapping.report_failures, "an ordered worker must report partial batch failures"
    # infra/plan.py: SQS raises the receive count of records skipped behind a failed one, so a larger
    # batch could redrive a group's later jobs to the DLQ unrun; ordered mappings take one record at a time.
    assert mapping.batch_size == 1, mapping.batch_size


def test_each_group_runs_in_enqueue_order_and_a_failure_holds_its_group(api, migrated_stage, deployed):
    # Two groups enqueued interleaved, one request after the other (each 202 before the next is sent);
    # in group "fifo-a" job 2 fails its first attempt.
    jobs: dict[tuple[str, int], str] = {}
    accepted: dict[tuple[str, int], datetime] = {}
    for seq in SEQUENCE:
        for account in ("fifo-a", "fifo-b"):
            fail_times = 1 if (account, seq) == ("fifo-a", 2) else 0
            response = api.post("/ordered_step", json={"account": account, "seq": seq, "fail_times": fail_times})
            assert response.status_code == 202, response.text
            jobs[(account, seq)] = response.json()["job_id"]
            accepted[(account, seq)] = datetime.now(UTC)

    def finished(account: str, expected: int):
        return lambda: (lambda got: got if len(got) >= expected else None)(runs(api, account))

    a = wait_for(finished("fifo-a", len(SEQUENCE) + 1), timeout=120, interval=1)
    b = wait_for(finished("fifo-b", len(SEQUENCE)), timeout=60, interval=1)

    # Group b: every job once, first attempt, in enqueue order.
    assert [(r["seq"], r["attempt"]) for r in b] == [(s, 1) for s in SEQUENCE], b
    # Group a: job 2 fails, and nothing later in the group runs before its retry succeeds.
    assert [(r["seq"], r["attempt"]) for r in a] == [(1, 1), (2, 1), (2, 2), (3, 1), (4, 1), (5, 1)], a
    for account, got in (("fifo-a", a), ("fifo-b", b)):
        assert [r["job_id"] for r in got if r["attempt"] == 1] == [jobs[(account, s)] for s in SEQUENCE], got
        times = [r["ran_at"] for r in got]
        assert times == sorted(times), f"{account}: attempts recorded out of clock order: {got}"
    # The group was really held: job 3 was already queued when job 2's retry (2 s backoff) ran.
    retry = datetime.fromisoformat(a[2]["ran_at"].replace("Z", "+00:00"))
    assert accepted[("fifo-a", 3)] < retry, (accepted[("fifo-a", 3)], a)
    # The failure was reported as a partial batch failure, not a whole-batch error.
    assert ordered_mapping(deployed).failures_reported, "the ordered worker never reported a batch item failure"

