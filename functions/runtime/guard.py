"""What one request may put into its trace: secret values redacted, and bounded volume.

Every span and log an invocation produces — user logs and custom spans, but also
the engine's db spans (whose error messages can echo row values), queue spans and
nested invocations — goes through the :class:`GuardedSink` the runtime gives that
invocation. It

* replaces every secret value handed to user code with ``[redacted]``, in names,
  messages, attribute and field keys and values;
* replaces lone UTF-16 surrogates (which UTF-8 stores cannot hold) with U+FFFD;
* bounds a request's logs (lines and bytes), its spans and the size of each
  attribute or field, counting what it drops; the function span then says how
  much was dropped and a final log line marks the truncation in the trace.

A request is the whole tree of invocations: nested ``ctx.function.invoke`` calls
share their caller's :class:`Budget`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from functions.shared.spans import LogRecord, Span, SpanSink, redact, storable

MAX_LOG_LINES = 1_000
MAX_LOG_BYTES = 1024 * 1024
MAX_SPANS = 2_000
MAX_MESSAGE_CHARS = 16 * 1024
MAX_VALUE_CHARS = 4 * 1024
MAX_ATTRS_CHARS = 32 * 1024
TRUNCATED = "[truncated]"


@dataclass
class Budget:
    """Counters for one request; shared by every invocation in it."""

    log_lines: int = 0
    log_bytes: int = 0
    spans: int = 0
    dropped_logs: int = 0
    dropped_log_bytes: int = 0
    dropped_spans: int = 0
    marked: set[str] = field(default_factory=set)

    def take_log(self, size: int) -> bool:
        if self.log_lines >= MAX_LOG_LINES or self.log_bytes + size > MAX_LOG_BYTES:
            self.dropped_logs += 1
            self.dropped_log_bytes += size
            return False
        self.log_lines += 1
        self.log_bytes += size
        return True

    def take_span(self) -> bool:
        if self.spans >= MAX_SPANS:
            self.dropped_spans += 1
            return False
        self.spans += 1
        return True

    def summary(self) -> dict[str, int]:
        """Span attributes saying what was dropped (empty when nothing was)."""
        out: dict[str, int] = {}
        if self.dropped_logs:
            out["logs.dropped"] = self.dropped_logs
            out["logs.dropped_bytes"] = self.dropped_log_bytes
        if self.dropped_spans:
            out["spans.dropped"] = self.dropped_spans
        return out


def clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... {TRUNCATED} ({len(text)} characters)"


def clip_tree(value: Any, limit: int = MAX_VALUE_CHARS) -> Any:
    """Every string (key or value) in ``value`` at most ``limit`` characters."""
    if isinstance(value, str):
        return clip(value, limit)
    if isinstance(value, dict):
        return {clip(k, 256) if isinstance(k, str) else k: clip_tree(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clip_tree(v, limit) for v in value]
    return value


def _clean_text(text: str, limit: int) -> str:
    """:func:`clip` then :func:`storable` (ASCII, the common case, is storable as it is)."""
    if len(text) > limit:
        text = clip(text, limit)
    return text if text.isascii() else storable(text)


def _clean_tree(value: Any, limit: int = MAX_VALUE_CHARS) -> Any:
    """``storable_tree(clip_tree(value))`` in one walk; scalars other than strings are kept as they are."""
    kind = type(value)
    if kind is str:
        return _clean_text(value, limit)
    if kind is dict or isinstance(value, dict):
        return {_clean_text(k, 256) if type(k) is str else k: _clean_tree(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_tree(v, limit) for v in value]
    if isinstance(value, str):  # a str subclass
        return _clean_text(str(value), limit)
    return value


_encode = json.JSONEncoder(default=str).encode  # one encoder: json.dumps(default=) builds one per call
_SCALAR_JSON_CHARS = 32  # the longest JSON of a number, true, false or null


def _surely_fits(attrs: dict[str, Any]) -> bool:
    """Whether the attributes' JSON is surely under MAX_ATTRS_CHARS, without encoding them.

    An upper bound: a character of a string is at most 6 in JSON (``\\uXXXX``), plus quotes, colon
    and comma. Anything but a flat dict of strings and scalars is left to the exact measure.
    """
    budget = MAX_ATTRS_CHARS
    for key, value in attrs.items():
        if type(key) is not str:
            return False
        budget -= 6 * len(key) + 4
        if type(value) is str:
            budget -= 6 * len(value) + 3
        elif value is None or type(value) in (int, float, bool):
            budget -= _SCALAR_JSON_CHARS
        else:
            return False
        if budget < 0:
            return False
    return True


def bounded_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Attributes with each value clipped, and the whole set under MAX_ATTRS_CHARS of JSON."""
    return _bounded(clip_tree(attrs))


def _bounded(clipped: dict[str, Any]) -> dict[str, Any]:
    """``clipped`` (already clipped), cut to MAX_ATTRS_CHARS of JSON."""
    if _surely_fits(clipped):
        return clipped
    size = len(_encode(clipped))
    if size <= MAX_ATTRS_CHARS:
        return clipped
    kept: dict[str, Any] = {}
    used = 0
    for key, value in clipped.items():
        cost = len(_encode({key: value}))
        if used + cost > MAX_ATTRS_CHARS:
            kept["attrs.truncated"] = f"{len(clipped) - len(kept)} attributes dropped ({size} characters in all)"
            break
        kept[key] = value
        used += cost
    return kept


class GuardedSink(SpanSink):
    """Redacts and bounds everything one request writes, then hands it to ``inner``."""

    def __init__(self, inner: SpanSink, secrets: Iterable[str], budget: Budget) -> None:
        self.inner = inner
        self.secrets = secrets  # a live set: values fetched later in the request are redacted too
        self.budget = budget

    def clean_span(self, span: Span) -> Span:
        # Built directly: dataclasses.replace costs more than everything else here together.
        return Span(span.trace_id, span.span_id, span.parent_span_id, span.kind,
                    _clean_text(redact(span.name, self.secrets), 256), span.start_us, span.duration_us,
                    span.status, _bounded(_clean_tree(redact(span.attrs, self.secrets))))

    def clean_log(self, record: LogRecord) -> LogRecord:
        return LogRecord(record.trace_id, record.span_id, record.ts_us, record.level, record.function,
                         _clean_text(redact(record.message, self.secrets), MAX_MESSAGE_CHARS),
                         _bounded(_clean_tree(redact(record.fields, self.secrets))))

    def write_spans(self, spans: Sequence[Span]) -> None:
        kept = [self.clean_span(s) for s in spans if self.budget.take_span()]
        if kept:
            self.inner.write_spans(kept)

    def write_logs(self, logs: Sequence[LogRecord]) -> None:
        kept = []
        for record in logs:
            clean = self.clean_log(record)
            size = len(clean.message) + len(_encode(clean.fields))
            if self.budget.take_log(size):
                kept.append(clean)
        if kept:
            self.inner.write_logs(kept)

    def flush(self) -> None:
        self.inner.flush()
