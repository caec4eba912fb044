"""Trace assembly: from the flat spans of one request to the trace the API, dashboard and CLI show.

The result (``GET /traces/{id}``, DESIGN §4) is a span tree plus what a reader needs
to act on it: total duration, status, the critical path, N+1 groups, slow queries
and index suggestions. Detection is the engine's (pure functions over spans) and
index advice is the engine's too (it needs the database), so both are injected:
:class:`Detectors` defaults to ``functions.engine.detectors``, imported when first
used, and the advice port is optional (no database, no suggestions).

Tree rules:

* the root is the gateway span whose parent is not in the trace (an upstream
  ``traceparent`` may name a parent we never see), else the earliest such span;
* a span whose parent is missing (written later, or lost) hangs under the root
  with ``orphan: true``, so nothing recorded is ever hidden;
* async executions are children of their enqueue span (``async → fn`` attempt
  spans), and they and their descendants carry ``async: true``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from functions.shared.spans import LogRecord, Span

_log = logging.getLogger("flux.observability")

Finder = Callable[[Sequence[Span], int], list[dict[str, Any]]]


class Thresholds(Protocol):
    """What assembly reads from the project's settings (``functions.shared.manifest.Observability`` fits)."""

    @property
    def slow_query_ms(self) -> int: ...

    @property
    def n_plus_one_threshold(self) -> int: ...


@dataclass(frozen=True, slots=True)
class DefaultThresholds:
    """The documented defaults of flux.json's ``observability`` (DESIGN §4), without loading pydantic.

    ``flux trace`` reading ``.flux/`` of a project with no ``observability`` section
    uses these, so the CLI does not pay for building the manifest models (~200 ms).
    A unit test keeps them equal to ``Observability()``.
    """

    slow_query_ms: int = 100
    n_plus_one_threshold: int = 5


class AdviceSource(Protocol):
    """The part of the engine's ``AdvicePort`` this layer calls."""

    def schema_graph(self) -> dict[str, Any]: ...

    def suggest_indexes(self, spans: Sequence[Span]) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class Detectors:
    n_plus_one: Finder
    slow_queries: Finder

    @classmethod
    def from_engine(cls) -> Detectors:
        from functions.engine import detectors

        return cls(detectors.find_n_plus_one, detectors.find_slow_queries)


def _end(span: Span) -> int:
    return span.start_us + max(0, span.duration_us)


def _http_status(span: Span) -> int | None:
    try:
        return int(span.attrs["http.status"])
    except (KeyError, TypeError, ValueError):
        return None


def is_attempt_span(span: Span) -> bool:
    return span.kind == "queue" and (span.name.startswith("async →") or "attempt" in span.attrs)


def trace_status(spans: Sequence[Span]) -> str:
    """``error`` when any gateway or function span failed (status error, or an HTTP status of 500+)."""
    for span in spans:
        if span.kind in ("gateway", "function"):
            code = _http_status(span)
            if span.status == "error" or (code is not None and code >= 500):
                return "error"
    return "ok"


def choose_root(spans: Sequence[Span]) -> Span:
    present = {s.span_id for s in spans}
    unparented = [s for s in spans if s.parent_span_id not in present]
    ordered = sorted(unparented or spans, key=lambda s: (s.start_us, s.span_id))
    return next((s for s in ordered if s.kind == "gateway"), ordered[0])


def critical_path(root: Span, children: dict[str, list[Span]]) -> list[str]:
    """Span ids on the critical path, by start time.

    Walks back from the end of each span: the child that finished last (clipped to
    the parent's end) is on the path, then the child that finished last before that
    one started, and so on (the algorithm Jaeger uses). Work that starts after its
    parent ended, like an async branch, does not delay the response and is left out.
    """
    path: list[tuple[int, int, Span]] = []
    stack: list[tuple[Span, int, int]] = [(root, _end(root), 0)]
    while stack:
        span, clip, depth = stack.pop()
        path.append((span.start_us, depth, span))
        cursor = min(_end(span), clip)
        span_end = cursor
        for child in sorted(children.get(span.span_id, ()), key=lambda c: (_end(c), c.start_us), reverse=True):
            if child.start_us < cursor and min(_end(child), span_end) <= cursor:
                stack.append((child, cursor, depth + 1))
                cursor = child.start_us
    path.sort(key=lambda entry: (entry[0], entry[1]))
    return [entry[2].span_id for entry in path]


class TraceAssembler:
    def __init__(self, settings: Thresholds, *, detectors: Detectors | None = None,
                 advice: AdviceSource | None = None) -> None:
        self.settings = settings
        self._detectors = detectors
        self.advice = advice

    @property
    def detectors(self) -> Detectors:
        if self._detectors is None:
            self._detectors = Detectors.from_engine()
        return self._detectors

    def findings(self, spans: Sequence[Span]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(N+1 groups, slow queries) of a set of spans, by the project's thresholds."""
        detectors = self.detectors
        return (detectors.n_plus_one(spans, self.settings.n_plus_one_threshold),
                detectors.slow_queries(spans, self.settings.slow_query_ms))

    def index_advice(self, spans: Sequence[Span]) -> tuple[list[dict[str, Any]], str | None]:
        """Index suggestions, or ([], reason) when the advisor cannot answer (a trace must still render)."""
        if self.advice is None:
            return [], None
        try:
            return list(self.advice.suggest_indexes(spans)), None
        except Exception as exc:  # noqa: BLE001 - advice needs the database; its outage must not hide the trace
            _log.warning("index advice unavailable: %s", exc)
            return [], f"index advice unavailable: {getattr(exc, 'message', None) or exc}"

    def assemble(self, spans: Sequence[Span], logs: Sequence[LogRecord] = ()) -> dict[str, Any]:
        if not spans:
            raise ValueError("a trace needs at least one span")
        by_id = {s.span_id: s for s in spans}
        root = choose_root(spans)
        children: dict[str, list[Span]] = {}
        orphans: set[str] = set()
        for span in spans:
            if span is root:
                continue
            parent = span.parent_span_id
            if parent not in by_id or parent == span.span_id:
                orphans.add(span.span_id)
                parent = root.span_id
            children.setdefault(parent, []).append(span)
        for kids in children.values():
            kids.sort(key=lambda s: (s.start_us, s.span_id))
        self._attach_cycles(spans, root, children, orphans)

        n1, slow = self.findings(spans)
        indexes, advice_error = self.index_advice(spans)
        n1_ids = {sid for group in n1 for sid in group.get("span_ids", ())}
        slow_ids = {q.get("span_id") for q in slow}
        path = critical_path(root, children)
        on_path = set(path)
        trace_start = min(s.start_us for s in spans)
        trace_end = max(_end(s) for s in spans)

        views: dict[str, dict[str, Any]] = {}
        flat: list[dict[str, Any]] = []
        stack: list[tuple[Span, int, bool, list[dict[str, Any]] | None]] = [(root, 0, False, None)]
        while stack:
            span, depth, in_async, siblings = stack.pop()
            in_async = in_async or is_attempt_span(span)
            view = {
                **span.to_dict(),
                "offset_us": span.start_us - trace_start,
                "depth": depth,
                "orphan": span.span_id in orphans,
                "async": in_async,
                "n_plus_one": span.span_id in n1_ids,
                "slow": span.span_id in slow_ids,
                "critical": span.span_id in on_path,
            }
            views[span.span_id] = view
            flat.append(view)
            node = {**view, "children": []}
            if siblings is not None:
                siblings.append(node)
            else:
                tree = node
            for child in reversed(children.get(span.span_id, [])):
                stack.append((child, depth + 1, in_async, node["children"]))

        return {
            "trace_id": root.trace_id,
            "name": root.name,
            "function": str(root.attrs.get("function") or ""),
            "start_us": trace_start,
            "duration_ms": round((trace_end - trace_start) / 1000, 3),
            "status": trace_status(spans),
            "http_status": _http_status(root),
            "span_count": len(spans),
            "root": tree,
            "spans": flat,
            "critical_path": path,
            "n1_warnings": n1,
            "slow_queries": slow,
            "suggested_indexes": indexes,
            "advice_error": advice_error,
            "logs": [r.to_dict() for r in sorted(logs, key=lambda r: r.ts_us)],
        }

    @staticmethod
    def _attach_cycles(spans: Sequence[Span], root: Span, children: dict[str, list[Span]], orphans: set[str]) -> None:
        """Spans whose parents form a loop never reach the root; hang the first of each loop under it."""
        reached = {root.span_id}
        frontier = [root.span_id]
        while frontier:
            for child in children.get(frontier.pop(), ()):
                if child.span_id not in reached:
                    reached.add(child.span_id)
                    frontier.append(child.span_id)
        for span in sorted(spans, key=lambda s: (s.start_us, s.span_id)):
            if span.span_id in reached:
                continue
            siblings = children.get(span.parent_span_id or "", [])
            if span in siblings:
                siblings.remove(span)
            children.setdefault(root.span_id, []).append(span)
            orphans.add(span.span_id)
            reached.add(span.span_id)
            frontier = [span.span_id]
            while frontier:
                for child in children.get(frontier.pop(), ()):
                    if child.span_id not in reached:
                        reached.add(child.span_id)
                        frontier.append(child.span_id)
        children.get(root.span_id, []).sort(key=lambda s: (s.start_us, s.span_id))
