"""Backoff delays (with a property test on the jitter bounds) and the job message's JSON form."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from queue_fakes import job_message

from functions.queue_consumer.backoff import MAX_DELAY_S, ceiling_delay_s, retry_delay_s
from functions.queue_consumer.errors import MalformedMessage
from functions.queue_consumer.message import JobMessage
from functions.shared.manifest import Retry


@pytest.mark.parametrize(("backoff", "expected"), [
    ("exponential", [0.2, 0.4, 0.8, 1.6]),
    ("linear", [0.2, 0.4, 0.6, 0.8]),
    ("fixed", [0.2, 0.2, 0.2, 0.2]),
])
def test_ceilings_follow_the_configured_backoff(backoff: str, expected: list[float]) -> None:
    retry = Retry(max_attempts=5, backoff=backoff, base_ms=200)
    assert [ceiling_delay_s(retry, n) for n in (1, 2, 3, 4)] == pytest.approx(expected)


def test_delays_are_capped_at_fifteen_minutes() -> None:
    assert ceiling_delay_s(Retry(max_attempts=100, base_ms=3_600_000), 1) == MAX_DELAY_S
    assert ceiling_delay_s(Retry(max_attempts=100, base_ms=1000), 99) == MAX_DELAY_S


@given(st.sampled_from(["exponential", "linear", "fixed"]), st.integers(0, 3_600_000), st.integers(1, 100),
       st.integers(0, 2**32))
def test_jittered_delay_stays_between_zero_and_the_ceiling(backoff: str, base_ms: int, attempt: int,
                                                           seed: int) -> None:
    retry = Retry(max_attempts=100, backoff=backoff, base_ms=base_ms)
    delay = retry_delay_s(retry, attempt, random.Random(seed))
    assert 0 <= delay <= ceiling_delay_s(retry, attempt) <= MAX_DELAY_S


def test_jitter_spreads_delays() -> None:
    rng = random.Random(7)
    delays = {round(retry_delay_s(Retry(base_ms=1000), 3, rng), 3) for _ in range(50)}
    assert len(delays) > 40


def test_message_round_trips_through_json() -> None:
    message = job_message(payload={"a": [1, "ü", None]}, group="g", idempotency_key="k", replay_of="old")
    assert JobMessage.from_json(message.to_json()) == message


@pytest.mark.parametrize("body", ["", "[]", "{", '{"job_id": "j"}', '{"job_id": "j", "function": "f", '
                                  '"trace_id": "t", "enqueued_at_us": "soon"}'])
def test_bodies_that_are_not_flux_jobs_are_malformed(body: str) -> None:
    with pytest.raises(MalformedMessage):
        JobMessage.from_json(body)


def test_replayed_keeps_the_trace_and_parent_and_drops_the_idempotency_key() -> None:
    original = job_message(idempotency_key="k", group="g")
    fresh = original.replayed()
    assert (fresh.trace_id, fresh.parent_span_id, fresh.group, fresh.payload, fresh.replay_of) == \
        (original.trace_id, original.parent_span_id, "g", original.payload, original.job_id)
    assert fresh.job_id != original.job_id and fresh.idempotency_key is None
    assert fresh.enqueued_at_us > original.enqueued_at_us
