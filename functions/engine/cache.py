"""The opt-in result cache behind ``cache: {ttl_s}`` on a select.

Entries are keyed by the rendered SQL and its parameters, live for ``ttl_s`` and are
dropped when any write *through the engine* touches their table. The cache lives in the
process (one per ``flux dev``, one per warm Lambda): it trades freshness for latency
within ``ttl_s``, which is what the caller asked for by opting in; writes made outside
the engine are only seen once the entry expires.

A select on a view (or with embeds) depends on several relations: its entry is registered
under each of them (the view and its base tables, from ``pg_depend``), so a write to any
one drops it.

A per-table generation counter closes the race where a read that started before a
write finishes after it: the read only stores its rows if no write to the table began
in between.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class CachedResult:
    rows: list[dict[str, Any]]
    truncated: bool
    count: int | None = None


@dataclass(slots=True)
class _Entry:
    tables: tuple[str, ...]
    expires_at: float
    result: CachedResult


def _names(tables: str | Iterable[str]) -> tuple[str, ...]:
    return (tables,) if isinstance(tables, str) else tuple(sorted(set(tables)))


class ResultCache:
    def __init__(self, *, max_entries: int = 1000, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._generations: dict[str, int] = {}
        self._by_table: dict[str, set[tuple[str, str]]] = {}

    @staticmethod
    def key(sql: str, params: Sequence[Any]) -> tuple[str, str]:
        # repr keeps types apart (1 vs '1' vs Decimal('1')), which is what distinguishes the queries.
        return sql, repr(list(params))

    def generation(self, tables: str | Iterable[str]) -> int:
        """A number that changes whenever a write to any of ``tables`` starts (counters only grow)."""
        return sum(self._generations.get(name, 0) for name in _names(tables))

    def get(self, key: tuple[str, str]) -> CachedResult | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self.clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry.result

    def put(self, key: tuple[str, str], tables: str | Iterable[str], result: CachedResult, ttl_s: float,
            generation: int) -> bool:
        """Store unless a write to one of ``tables`` started since ``generation`` was read."""
        names = _names(tables)
        if self.generation(names) != generation:
            return False
        self._drop(key)
        self._entries[key] = _Entry(names, self.clock() + ttl_s, result)
        for name in names:
            self._by_table.setdefault(name, set()).add(key)
        while len(self._entries) > self.max_entries:
            self._drop(next(iter(self._entries)))
        return True

    def invalidate(self, tables: Iterable[str]) -> None:
        """Forget every entry of these tables; call when a write starts and again when it is done."""
        names = set(tables)
        if not names:
            return
        for name in names:
            self._generations[name] = self._generations.get(name, 0) + 1
            for key in self._by_table.pop(name, set()):
                self._drop(key)

    def _drop(self, key: tuple[str, str]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            for name in entry.tables:
                self._by_table.get(name, set()).discard(key)

    def __len__(self) -> int:
        return len(self._entries)
