"""DynamoDB write paths moto does not model: chunking, UnprocessedItems, throttling, deadline, oversize items."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from functions.observability.dynamo_store import MAX_ITEM_BYTES, DynamoSpanStore, item_size
from functions.observability.errors import SpanStoreUnavailable
from functions.shared.errors import FluxError
from functions.shared.spans import LogRecord, Span

TABLE = "flux-spans"
T0 = 1_700_000_000_000_000


class FakeTime:
    """A monotonic clock that advances only when the store sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _spans(n: int, trace_id: str = "a" * 32) -> list[Span]:
    return [Span(trace_id, f"{i:016x}", None if i == 0 else f"{0:016x}", "db", "select users", T0 + i, 10, "ok",
                 {"table": "users", "function": "f"}) for i in range(n)]


@pytest.fixture
def stubbed(aws_env: None) -> tuple[DynamoSpanStore, Stubber, FakeTime]:
    client = boto3.client("dynamodb", region_name="us-east-1")
    fake = FakeTime()
    store = DynamoSpanStore(client, TABLE, shards=4, write_deadline_s=2.0, base_backoff_s=0.1, max_backoff_s=0.5,
                            clock=lambda: 1_700_000_000.0, monotonic=fake.monotonic, sleep=fake.sleep,
                            jitter=lambda: 1.0)
    return store, Stubber(client), fake


def _puts(store: DynamoSpanStore, spans: list[Span]) -> list[dict]:
    return [{"PutRequest": {"Item": store.span_item(s)}} for s in spans]


def test_writes_go_in_chunks_of_25(stubbed) -> None:
    store, stubber, fake = stubbed
    spans = _spans(60)
    for chunk in (spans[:25], spans[25:50], spans[50:]):
        stubber.add_response("batch_write_item", {"UnprocessedItems": {}}, {"RequestItems": {TABLE: _puts(store, chunk)}})
    with stubber:
        store.write_spans(spans)
    stubber.assert_no_pending_responses()
    assert fake.sleeps == []


def test_unprocessed_items_are_retried_alone(stubbed) -> None:
    store, stubber, fake = stubbed
    spans = _spans(5)
    leftover = _puts(store, spans[3:])
    stubber.add_response("batch_write_item", {"UnprocessedItems": {TABLE: leftover}},
                         {"RequestItems": {TABLE: _puts(store, spans)}})
    stubber.add_response("batch_write_item", {"UnprocessedItems": {TABLE: leftover[1:]}},
                         {"RequestItems": {TABLE: leftover}})
    stubber.add_response("batch_write_item", {}, {"RequestItems": {TABLE: leftover[1:]}})
    with stubber:
        store.write_spans(spans)
    stubber.assert_no_pending_responses()
    assert fake.sleeps == [0.2, 0.4]  # base 0.1 doubled per attempt, full jitter pinned at 1.0


def test_throttling_is_retried_with_capped_backoff(stubbed) -> None:
    store, stubber, fake = stubbed
    spans = _spans(3)
    for _ in range(4):
        stubber.add_client_error("batch_write_item", service_error_code="ProvisionedThroughputExceededException",
                                 http_status_code=400)
    stubber.add_response("batch_write_item", {"UnprocessedItems": {}}, {"RequestItems": {TABLE: _puts(store, spans)}})
    with stubber:
        store.write_spans(spans)
    stubber.assert_no_pending_responses()
    assert fake.sleeps == [0.2, 0.4, 0.5, 0.5]


def test_gives_up_at_the_deadline(stubbed) -> None:
    store, stubber, fake = stubbed
    spans = _spans(2)
    for _ in range(20):
        stubber.add_response("batch_write_item", {"UnprocessedItems": {TABLE: _puts(store, spans)}})
    with stubber, pytest.raises(SpanStoreUnavailable, match="2 items not written") as info:
        store.write_spans(spans)
    assert sum(fake.sleeps) <= 2.0
    assert len(fake.sleeps) >= 3
    assert isinstance(info.value, FluxError) and info.value.status == 503


def test_jitter_scales_the_delay(aws_env: None) -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    fake = FakeTime()
    store = DynamoSpanStore(client, TABLE, base_backoff_s=0.1, max_backoff_s=0.5, monotonic=fake.monotonic,
                            sleep=fake.sleep, jitter=lambda: 0.25)
    stubber = Stubber(client)
    stubber.add_client_error("batch_write_item", service_error_code="ThrottlingException", http_status_code=400)
    stubber.add_response("batch_write_item", {})
    with stubber:
        store.write_spans(_spans(1))
    assert fake.sleeps == [0.05]


def test_other_errors_are_not_retried(stubbed) -> None:
    store, stubber, fake = stubbed
    stubber.add_client_error("batch_write_item", service_error_code="ResourceNotFoundException", http_status_code=400)
    with stubber, pytest.raises(Exception, match="ResourceNotFoundException"):
        store.write_spans(_spans(1))
    assert fake.sleeps == []


def test_duplicate_keys_in_one_write_are_collapsed(stubbed) -> None:
    store, stubber, _ = stubbed
    spans = _spans(2)
    stubber.add_response("batch_write_item", {}, {"RequestItems": {TABLE: _puts(store, spans)}})
    with stubber:
        store.write_spans(spans + spans)
    stubber.assert_no_pending_responses()


def test_items_carry_ttl_and_only_roots_enter_the_recent_index(stubbed) -> None:
    store, _, _ = stubbed
    root, child = _spans(2)
    root_item, child_item = store.span_item(root), store.span_item(child)
    assert root_item["expires_at"] == {"N": str(1_700_000_000 + 14 * 86_400)}
    assert root_item["sk"] == {"S": f"{T0:020d}#{root.span_id}"}
    assert root_item["gsi1pk"]["S"].startswith("recent#") and int(root_item["gsi1pk"]["S"][7:]) in range(4)
    assert "gsi1pk" not in child_item
    log = store.log_item(LogRecord("a" * 32, None, T0, "info", "f", "hi", {}))
    assert log["pk"] == {"S": "log#" + "a" * 32} and log["gsi1pk"]["S"].startswith("logs#")
    assert store.log_item(LogRecord("a" * 32, None, T0, "info", "f", "hi", {}))["sk"] == log["sk"]


def test_oversized_span_is_truncated_and_marked(dynamo_client) -> None:
    store = DynamoSpanStore(dynamo_client, TABLE)
    big = Span("c" * 32, "1" * 16, None, "gateway", "GET /x", T0, 5, "error",
               {"function": "f", "http.status": 500, "error.file": "functions/f/index.ts", "error.line": 12,
                "error.stack": "x" * 500_000, "blob": {"rows": ["y" * 1000] * 600}})
    assert item_size(store.span_item(big)) <= MAX_ITEM_BYTES
    store.write_spans([big])
    stored = store.get_trace("c" * 32)[0]
    assert stored.attrs["truncated"] is True
    assert stored.attrs["error.file"] == "functions/f/index.ts" and stored.attrs["error.line"] == 12
    assert stored.attrs["error.stack"].startswith("xxxx") and len(stored.attrs["error.stack"]) < 5_000
    assert stored.attrs["http.status"] == 500
    assert store.list_traces()[0].http_status == 500


def test_oversized_log_is_truncated_and_marked(dynamo_client) -> None:
    store = DynamoSpanStore(dynamo_client, TABLE, max_item_bytes=20_000)
    record = LogRecord("d" * 32, None, T0, "info", "f", "m" * 50_000, {"k": "v", "dump": ["z" * 100] * 500})
    store.write_logs([record])
    stored = store.list_logs(request_id="d" * 32)[0]
    assert stored.fields["truncated"] is True and stored.fields["k"] == "v"
    assert stored.message.endswith("…[truncated]") and len(stored.message) < 3_000
    assert len(json.dumps(stored.fields)) < 20_000


def test_a_batch_refused_for_one_bad_item_is_written_item_by_item(stubbed) -> None:
    """Issue #14 (6): one record DynamoDB refuses must not lose the others of its batch."""
    store, stubber, _ = stubbed
    spans = _spans(3)
    stubber.add_client_error("batch_write_item", service_error_code="ValidationException", http_status_code=400)
    stubber.add_response("batch_write_item", {"UnprocessedItems": {}}, {"RequestItems": {TABLE: _puts(store, spans[:1])}})
    stubber.add_client_error("batch_write_item", service_error_code="ValidationException", http_status_code=400)
    stubber.add_response("batch_write_item", {"UnprocessedItems": {}}, {"RequestItems": {TABLE: _puts(store, spans[2:])}})
    with stubber:
        store.write_spans(spans)
    stubber.assert_no_pending_responses()


def test_lone_surrogates_are_replaced_before_the_item_is_built(stubbed) -> None:
    store, stubber, _ = stubbed
    span = Span("a" * 32, "0" * 16, None, "custom", "bad \ud800 name", T0, 1, "ok", {"k\udfff": "v\ud800"})
    clean = Span("a" * 32, "0" * 16, None, "custom", "bad \ufffd name", T0, 1, "ok", {"k\ufffd": "v\ufffd"})
    stubber.add_response("batch_write_item", {"UnprocessedItems": {}}, {"RequestItems": {TABLE: _puts(store, [clean])}})
    with stubber:
        store.write_spans([span])
    stubber.assert_no_pending_responses()
