"""The span store port: the sink every layer writes to, plus the reads the API and CLI need.

Adapters: :mod:`functions.observability.sqlite_store` (local, under ``.flux/``) and
the DynamoDB adapter (AWS). Both pass the same contract tests.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

from functions.shared.spans import LogRecord, Span, SpanSink


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """One row of the traces list: what the root (gateway or queue) span says about a request."""

    trace_id: str
    name: str
    function: str
    kind: str
    status: str
    http_status: int | None
    start_us: int
    duration_us: int
    method: str | None = None
    route: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SpanStore(SpanSink):
    @abstractmethod
    def get_trace(self, trace_id: str) -> list[Span]:
        """Every span of a trace, ordered by start time."""

    @abstractmethod
    def list_traces(self, *, function: str | None = None, status: str | None = None,
                    since_us: int | None = None, limit: int = 50) -> list[TraceSummary]:
        """Most recent root spans first."""

    @abstractmethod
    def list_logs(self, *, function: str | None = None, level: str | None = None, since_us: int | None = None,
                  request_id: str | None = None, limit: int = 100) -> list[LogRecord]:
        """Log records, oldest first within the newest ``limit``."""


def summary_of(span: Span) -> TraceSummary:
    attrs = span.attrs
    return TraceSummary(
        trace_id=span.trace_id,
        name=span.name,
        function=str(attrs.get("function") or ""),
        kind=span.kind,
        status=span.status,
        http_status=attrs.get("http.status"),
        start_us=span.start_us,
        duration_us=span.duration_us,
        method=attrs.get("http.method"),
        route=attrs.get("http.route"),
    )
