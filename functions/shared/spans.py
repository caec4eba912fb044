"""Spans, log records and the sink port every layer writes them through.

A span is the unit of a trace (DESIGN §4): ``trace_id, span_id, parent_span_id,
kind, name, start_us, duration_us, status, attrs``. Layers build spans with
:func:`finish_span` and hand them to a :class:`SpanSink`; the sink's adapters
(SQLite locally, DynamoDB in AWS) decide how they are stored. Writing to a sink
must never fail the request that produced the span, so :class:`SafeSink` wraps
any adapter and turns its failures into a log line.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from functions.shared.ids import new_span_id

SpanKind = Literal["gateway", "function", "db", "queue", "http", "custom"]
SpanStatus = Literal["ok", "error"]
LogLevel = Literal["debug", "info", "warn", "error"]
SPAN_KINDS: tuple[str, ...] = ("gateway", "function", "db", "queue", "http", "custom")
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warn", "error")

_log = logging.getLogger("flux.spans")


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass(slots=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: str
    name: str
    start_us: int
    duration_us: int = 0
    status: str = "ok"
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Span:
        return cls(
            trace_id=str(data["trace_id"]),
            span_id=str(data["span_id"]),
            parent_span_id=data.get("parent_span_id") or None,
            kind=str(data["kind"]),
            name=str(data["name"]),
            start_us=int(data["start_us"]),
            duration_us=int(data.get("duration_us") or 0),
            status=str(data.get("status") or "ok"),
            attrs=dict(data.get("attrs") or {}),
        )


@dataclass(slots=True)
class LogRecord:
    trace_id: str
    span_id: str | None
    ts_us: int
    level: str
    function: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogRecord:
        return cls(
            trace_id=str(data["trace_id"]),
            span_id=data.get("span_id") or None,
            ts_us=int(data["ts_us"]),
            level=str(data.get("level") or "info"),
            function=str(data.get("function") or ""),
            message=str(data.get("message") or ""),
            fields=dict(data.get("fields") or {}),
        )


@dataclass(slots=True)
class OpenSpan:
    """A span being timed; :meth:`finish` turns it into a :class:`Span`."""

    trace_id: str
    parent_span_id: str | None
    kind: str
    name: str
    span_id: str = field(default_factory=new_span_id)
    start_us: int = field(default_factory=now_us)
    attrs: dict[str, Any] = field(default_factory=dict)
    _t0: float = field(default_factory=time.perf_counter)

    def finish(self, status: str = "ok", **attrs: Any) -> Span:
        duration = int((time.perf_counter() - self._t0) * 1_000_000)
        merged = {**self.attrs, **attrs}
        return Span(self.trace_id, self.span_id, self.parent_span_id, self.kind, self.name,
                    self.start_us, duration, status, merged)


_MAX_BACKDATE_US = 5_000_000


def start_span(trace_id: str, parent_span_id: str | None, kind: str, name: str, *,
               issued_us: int | None = None, **attrs: Any) -> OpenSpan:
    """A span starting now, or at ``issued_us`` when the work was requested a little earlier.

    Backdating is bounded (5 s) and never into the future, since ``issued_us`` may come from
    another process's clock.
    """
    span = OpenSpan(trace_id, parent_span_id, kind, name, attrs=attrs)  # **attrs is already a fresh dict
    if issued_us is not None:
        lag = span.start_us - int(issued_us)
        if 0 < lag <= _MAX_BACKDATE_US:
            span.start_us -= lag
            span._t0 -= lag / 1_000_000
    return span


class SpanSink(ABC):
    """Port: where spans and logs go. Adapters implement the two writes."""

    @abstractmethod
    def write_spans(self, spans: Sequence[Span]) -> None: ...

    @abstractmethod
    def write_logs(self, logs: Sequence[LogRecord]) -> None: ...

    def flush(self) -> None:  # noqa: B027 - optional hook, most sinks write through
        """Block until everything handed over so far is stored (buffering sinks override)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


class NullSink(SpanSink):
    """Tracing off: spans and logs are dropped."""

    def write_spans(self, spans: Sequence[Span]) -> None:
        return None

    def write_logs(self, logs: Sequence[LogRecord]) -> None:
        return None


class MemorySink(SpanSink):
    """Keeps everything in lists; used by tests and by in-process tools."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.logs: list[LogRecord] = []

    def write_spans(self, spans: Sequence[Span]) -> None:
        self.spans.extend(spans)

    def write_logs(self, logs: Sequence[LogRecord]) -> None:
        self.logs.extend(logs)


class SafeSink(SpanSink):
    """Wraps a sink so that a storage failure is logged, never raised to the request."""

    def __init__(self, inner: SpanSink) -> None:
        self.inner = inner

    def write_spans(self, spans: Sequence[Span]) -> None:
        try:
            self.inner.write_spans(spans)
        except Exception:  # noqa: BLE001 - tracing must never fail a request
            _log.exception("span store failed; %d spans dropped", len(spans))

    def write_logs(self, logs: Sequence[LogRecord]) -> None:
        try:
            self.inner.write_logs(logs)
        except Exception:  # noqa: BLE001
            _log.exception("span store failed; %d log records dropped", len(logs))

    def flush(self) -> None:
        try:
            self.inner.flush()
        except Exception:  # noqa: BLE001
            _log.exception("span store flush failed")

    def close(self) -> None:
        try:
            self.inner.close()
        except Exception:  # noqa: BLE001
            _log.exception("span store close failed")


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """Replace every occurrence of a secret value inside strings of ``value``, dict keys included."""
    # Longest first, so a secret that starts with another is not half-replaced.
    needles = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
    if not needles:
        return value
    return _redact(value, needles)


def _redact(value: Any, needles: list[str]) -> Any:
    if isinstance(value, str):
        for needle in needles:
            if needle in value:
                value = value.replace(needle, "[redacted]")
        return value
    if isinstance(value, dict):
        return {(_redact(k, needles) if isinstance(k, str) else k): _redact(v, needles) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact(v, needles) for v in value]
    return value


def is_request_row(span: Span) -> bool:
    """Whether a span starts a row of the traces list: a span without parent, or a gateway span that
    continues a caller's trace (``root``). Only the gateway and the queue write such spans."""
    return span.parent_span_id is None or (span.kind in ("gateway", "queue") and bool(span.attrs.get("root")))


def storable(text: str) -> str:
    """``text`` with lone UTF-16 surrogates replaced by U+FFFD: UTF-8 (SQLite, DynamoDB) cannot hold them.

    They arrive from JSON (``"\\ud800"`` decodes to one); a well-formed surrogate pair is joined into
    the character it encodes.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def storable_tree(value: Any) -> Any:
    """:func:`storable` applied to every string (keys too) inside a JSON-like value."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(k) if isinstance(k, str) else k: storable_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_tree(v) for v in value]
    return value
