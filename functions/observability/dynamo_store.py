"""DynamoDB span store: the AWS adapter of :class:`SpanStore` (keys in :mod:`dynamo_schema`).

Writes go through ``BatchWriteItem`` in chunks of at most 25 requests. DynamoDB may
accept a batch only in part (``UnprocessedItems``) or throttle it outright; both are
retried with capped, fully jittered exponential backoff until a deadline, after
which :class:`SpanStoreUnavailable` is raised for the caller's sink wrapper to log
(DESIGN §7: a span store outage never fails a request). Items over a size bound
(DynamoDB refuses items over 400 KB) are cut down and marked ``truncated``.

The low-level boto3 client is injected, so tests use moto or a botocore Stubber.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from functions.observability.dynamo_schema import (
    DEFAULT_SHARDS,
    GSI_NAME,
    GSI_PK,
    GSI_SK,
    LOG_PK_PREFIX,
    LOG_SHARD_PREFIX,
    PK,
    SK,
    TRACE_SHARD_PREFIX,
    TTL_ATTRIBUTE,
)
from functions.observability.errors import SpanStoreUnavailable
from functions.observability.store import SpanStore, TraceSummary, summary_of
from functions.shared.spans import LOG_LEVELS, LogRecord, Span, is_request_row, storable, storable_tree

_log = logging.getLogger("flux.observability")

BATCH_SIZE = 25
MAX_ITEM_BYTES = 350_000  # below DynamoDB's 400 KB item limit, leaving room for key and index attributes
MAX_VALUE_CHARS = 2_048
RETRYABLE_CODES = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "InternalServerError", "ServiceUnavailable",
})
_TRUNCATED_MARK = "…[truncated]"


def _client_error() -> type[Exception]:
    """botocore's ``ClientError``, imported when a write fails rather than when a Lambda starts."""
    from botocore.exceptions import ClientError

    return ClientError


def shard_of(trace_id: str, shards: int) -> int:
    """Stable shard of a trace (the same in every process, unlike ``hash()``)."""
    return int(hashlib.blake2b(trace_id.encode(), digest_size=4).hexdigest(), 16) % shards


def item_size(item: dict[str, dict[str, str]]) -> int:
    """An upper-bound estimate of DynamoDB's item size: names plus UTF-8 values."""
    total = 0
    for name, value in item.items():
        total += len(name.encode()) + sum(len(str(v).encode()) for v in value.values())
    return total


def shrink_mapping(values: dict[str, Any], budget: int) -> dict[str, Any]:
    """Cut long values, then drop the largest keys, until the JSON fits ``budget`` bytes.

    Keeps the keys that make spans readable (short values such as table, status,
    error.file) and marks the result ``truncated`` so readers know data is missing.
    """
    cut: dict[str, Any] = {}
    for key, value in values.items():
        text = value if isinstance(value, str) else None
        if text is None and isinstance(value, dict | list):
            encoded = json.dumps(value, default=str)
            text = encoded if len(encoded) > MAX_VALUE_CHARS else None
        cut[key] = text[:MAX_VALUE_CHARS] + _TRUNCATED_MARK if text and len(text) > MAX_VALUE_CHARS else value
    cut["truncated"] = True
    sizes = sorted(cut, key=lambda k: len(json.dumps(cut[k], default=str)), reverse=True)
    while len(json.dumps(cut, default=str).encode()) > budget and sizes:
        key = sizes.pop(0)
        if key != "truncated":
            del cut[key]
    return cut


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(int(value))}


class DynamoSpanStore(SpanStore):
    def __init__(self, client: Any, table_name: str, *, shards: int = DEFAULT_SHARDS, retention_days: int = 14,
                 write_deadline_s: float = 5.0, base_backoff_s: float = 0.05, max_backoff_s: float = 1.0,
                 max_item_bytes: int = MAX_ITEM_BYTES, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[], float] = random.random) -> None:
        if shards < 1:
            raise ValueError("shards must be >= 1")
        self.client = client
        self.table_name = table_name
        self.shards = shards
        self.retention_s = retention_days * 86_400
        self.write_deadline_s = write_deadline_s
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_item_bytes = max_item_bytes
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._jitter = jitter

    # -- writes ---------------------------------------------------------------------------------------------------

    def write_spans(self, spans: Sequence[Span]) -> None:
        self._batch_write([self.span_item(_storable_span(s)) for s in spans])

    def write_logs(self, logs: Sequence[LogRecord]) -> None:
        self._batch_write([self.log_item(_storable_log(r)) for r in logs])

    def _expires_at(self) -> int:
        return int(self._clock()) + self.retention_s

    def span_item(self, span: Span) -> dict[str, dict[str, str]]:
        """The DynamoDB item of a span, cut to size if needed."""
        item = {
            PK: _s(span.trace_id), SK: _s(f"{span.start_us:020d}#{span.span_id}"),
            "trace_id": _s(span.trace_id), "span_id": _s(span.span_id), "kind": _s(span.kind), "name": _s(span.name),
            "start_us": _n(span.start_us), "duration_us": _n(span.duration_us), "status": _s(span.status),
            "fn": _s(str(span.attrs.get("function") or "")), "attrs": _s(json.dumps(span.attrs, default=str)),
            TTL_ATTRIBUTE: _n(self._expires_at()),
        }
        if span.parent_span_id:
            item["parent_span_id"] = _s(span.parent_span_id)
        if is_request_row(span):
            item[GSI_PK] = _s(f"{TRACE_SHARD_PREFIX}{shard_of(span.trace_id, self.shards)}")
            item[GSI_SK] = _n(span.start_us)
        size = item_size(item)
        if size > self.max_item_bytes:
            item["name"] = _s(span.name[:MAX_VALUE_CHARS])
            budget = self.max_item_bytes - (item_size(item) - len(item["attrs"]["S"].encode()))
            item["attrs"] = _s(json.dumps(shrink_mapping(span.attrs, budget), default=str))
        return item

    def log_item(self, record: LogRecord) -> dict[str, dict[str, str]]:
        fields = json.dumps(record.fields, default=str, sort_keys=True)
        digest = hashlib.blake2b(
            json.dumps([record.span_id, record.level, record.function, record.message, fields]).encode(),
            digest_size=8).hexdigest()
        item = {
            PK: _s(f"{LOG_PK_PREFIX}{record.trace_id}"), SK: _s(f"{record.ts_us:020d}#{digest}"),
            "trace_id": _s(record.trace_id), "ts_us": _n(record.ts_us), "level": _s(record.level),
            "fn": _s(record.function), "message": _s(record.message), "fields": _s(fields),
            GSI_PK: _s(f"{LOG_SHARD_PREFIX}{shard_of(record.trace_id, self.shards)}"), GSI_SK: _n(record.ts_us),
            TTL_ATTRIBUTE: _n(self._expires_at()),
        }
        if record.span_id:
            item["span_id"] = _s(record.span_id)
        if item_size(item) > self.max_item_bytes:
            item["message"] = _s(record.message[:MAX_VALUE_CHARS] + _TRUNCATED_MARK
                                 if len(record.message) > MAX_VALUE_CHARS else record.message)
            budget = self.max_item_bytes - (item_size(item) - len(fields.encode()))
            item["fields"] = _s(json.dumps(shrink_mapping(record.fields, budget), default=str))
        return item

    def _batch_write(self, items: list[dict[str, dict[str, str]]]) -> None:
        if not items:
            return
        # BatchWriteItem refuses duplicate keys in one request; the last write of a key wins, as a retry would.
        unique = list({(i[PK]["S"], i[SK]["S"]): i for i in items}.values())
        deadline = self._monotonic() + self.write_deadline_s
        for start in range(0, len(unique), BATCH_SIZE):
            self._write_chunk([{"PutRequest": {"Item": i}} for i in unique[start:start + BATCH_SIZE]], deadline)

    def _write_chunk(self, pending: list[dict[str, Any]], deadline: float) -> None:
        attempt = 0
        while pending:
            try:
                response = self.client.batch_write_item(RequestItems={self.table_name: pending})
                pending = (response.get("UnprocessedItems") or {}).get(self.table_name) or []
                reason = "unprocessed items"
            except _client_error() as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code == "ValidationException" and len(pending) > 1:
                    # One bad item fails the whole batch: write the items one by one so the others are kept.
                    self._write_each(pending, deadline)
                    return
                if code not in RETRYABLE_CODES:
                    raise
                reason = code
            if not pending:
                return
            attempt += 1
            delay = min(self.max_backoff_s, self.base_backoff_s * (2 ** attempt)) * self._jitter()
            if self._monotonic() + delay > deadline:
                raise SpanStoreUnavailable(
                    f"DynamoDB table {self.table_name}: {len(pending)} items not written after {attempt} "
                    f"attempts ({reason})")
            self._sleep(delay)

    def _write_each(self, requests: list[dict[str, Any]], deadline: float) -> None:
        refused = 0
        for request in requests:
            try:
                self._write_chunk([request], deadline)
            except _client_error() as exc:
                if exc.response.get("Error", {}).get("Code", "") != "ValidationException":
                    raise
                refused += 1
                _log.warning("DynamoDB table %s refused one item: %s", self.table_name,
                             exc.response.get("Error", {}).get("Message", ""))
        if refused:
            _log.warning("DynamoDB table %s: %d of %d items refused, the others written", self.table_name, refused,
                         len(requests))

    # -- reads ----------------------------------------------------------------------------------------------------

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every page of a query, following ``LastEvaluatedKey``."""
        kwargs["TableName"] = self.table_name
        while True:
            page = self.client.query(**kwargs)
            yield page
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def get_trace(self, trace_id: str) -> list[Span]:
        spans: list[Span] = []
        for page in self._query(KeyConditionExpression="#pk = :pk", ExpressionAttributeNames={"#pk": PK},
                                ExpressionAttributeValues={":pk": _s(trace_id)}, ConsistentRead=True):
            spans.extend(_span_of(item) for item in page.get("Items", []))
        return spans

    def list_traces(self, *, function: str | None = None, status: str | None = None,
                    since_us: int | None = None, limit: int = 50) -> list[TraceSummary]:
        limit = max(1, min(limit, 1000))
        filters: dict[str, Any] = {}
        if function:
            filters["fn"] = [function]
        if status:
            filters["status"] = [status]
        items = self._newest_across_shards(TRACE_SHARD_PREFIX, since_us, filters, limit)
        return [summary_of(_span_of(i)) for i in items]

    def list_logs(self, *, function: str | None = None, level: str | None = None, since_us: int | None = None,
                  request_id: str | None = None, limit: int = 100) -> list[LogRecord]:
        limit = max(1, min(limit, 10_000))
        filters: dict[str, Any] = {}
        if function:
            filters["fn"] = [function]
        if level:
            filters["level"] = list(LOG_LEVELS[LOG_LEVELS.index(level):]) if level in LOG_LEVELS else [level]
        if request_id:
            if since_us is not None:
                filters["ts_us"] = since_us
            query = self._filtered({"KeyConditionExpression": "#pk = :pk", "ScanIndexForward": False},
                                   {"#pk": PK}, {":pk": _s(f"{LOG_PK_PREFIX}{request_id}")}, filters)
            items = self._collect(query, limit)
        else:
            items = self._newest_across_shards(LOG_SHARD_PREFIX, since_us, filters, limit)
        records = [_log_of(i) for i in items]
        records.sort(key=lambda r: r.ts_us)
        return records

    def _newest_across_shards(self, prefix: str, since_us: int | None, filters: dict[str, Any],
                              limit: int) -> list[dict[str, Any]]:
        """Query every shard of the GSI newest first and merge: the newest ``limit`` items overall."""
        def one(shard: int) -> list[dict[str, Any]]:
            names = {"#gpk": GSI_PK}
            values: dict[str, Any] = {":gpk": _s(f"{prefix}{shard}")}
            condition = "#gpk = :gpk"
            if since_us is not None:
                names["#gsk"] = GSI_SK
                condition += " AND #gsk >= :since"
                values[":since"] = _n(since_us)
            query = self._filtered({"IndexName": GSI_NAME, "KeyConditionExpression": condition,
                                    "ScanIndexForward": False}, names, values, filters)
            return self._collect(query, limit)

        with ThreadPoolExecutor(max_workers=min(self.shards, 8)) as pool:
            merged = [item for part in pool.map(one, range(self.shards)) for item in part]
        merged.sort(key=lambda i: int(i[GSI_SK]["N"]), reverse=True)
        return merged[:limit]

    @staticmethod
    def _filtered(base: dict[str, Any], names: dict[str, str], values: dict[str, Any],
                  filters: dict[str, Any]) -> dict[str, Any]:
        clauses = []
        for n, (attr, wanted) in enumerate(filters.items()):
            names[f"#f{n}"] = attr
            if isinstance(wanted, int):
                values[f":f{n}"] = _n(wanted)
                clauses.append(f"#f{n} >= :f{n}")
                continue
            keys = []
            for m, value in enumerate(wanted):
                values[f":f{n}_{m}"] = _s(value)
                keys.append(f":f{n}_{m}")
            clauses.append(f"#f{n} IN ({', '.join(keys)})")
        query = {**base, "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}
        if clauses:
            query["FilterExpression"] = " AND ".join(clauses)
        return query

    def _collect(self, query: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for page in self._query(**query, Limit=max(limit, 25)):
            items.extend(page.get("Items", []))
            if len(items) >= limit:
                break
        return items[:limit]


def _span_of(item: dict[str, Any]) -> Span:
    return Span(
        trace_id=item["trace_id"]["S"], span_id=item["span_id"]["S"],
        parent_span_id=item["parent_span_id"]["S"] if "parent_span_id" in item else None,
        kind=item["kind"]["S"], name=item["name"]["S"], start_us=int(item["start_us"]["N"]),
        duration_us=int(item["duration_us"]["N"]), status=item["status"]["S"], attrs=json.loads(item["attrs"]["S"]),
    )


def _log_of(item: dict[str, Any]) -> LogRecord:
    return LogRecord(
        trace_id=item["trace_id"]["S"], span_id=item["span_id"]["S"] if "span_id" in item else None,
        ts_us=int(item["ts_us"]["N"]), level=item["level"]["S"], function=item["fn"]["S"],
        message=item["message"]["S"], fields=json.loads(item["fields"]["S"]),
    )


def _storable_span(span: Span) -> Span:
    """DynamoDB strings are UTF-8: lone surrogates become U+FFFD before botocore serialises the item."""
    return Span(span.trace_id, span.span_id, span.parent_span_id, span.kind, storable(span.name), span.start_us,
                span.duration_us, span.status, storable_tree(span.attrs))


def _storable_log(record: LogRecord) -> LogRecord:
    return LogRecord(record.trace_id, record.span_id, record.ts_us, record.level, storable(record.function),
                     storable(record.message), storable_tree(record.fields))
