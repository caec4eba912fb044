"""The opt-in result cache: TTL, per-table invalidation, the read/write race, the size bound."""

from __future__ import annotations

from functions.engine.cache import CachedResult, ResultCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def result(n: int) -> CachedResult:
    return CachedResult([{"n": n}], False)


def test_entries_expire_after_their_ttl() -> None:
    clock = Clock()
    cache = ResultCache(clock=clock)
    key = cache.key("SELECT 1", [1])
    assert cache.put(key, "orders", result(1), ttl_s=5, generation=cache.generation("orders"))
    clock.now += 4.9
    assert cache.get(key) == result(1)
    clock.now += 0.2
    assert cache.get(key) is None and len(cache) == 0


def test_a_write_to_a_table_drops_only_that_tables_entries() -> None:
    cache = ResultCache()
    orders, users = cache.key("SELECT orders", []), cache.key("SELECT users", [])
    cache.put(orders, "orders", result(1), 60, cache.generation("orders"))
    cache.put(users, "users", result(2), 60, cache.generation("users"))
    cache.invalidate(["orders"])
    assert cache.get(orders) is None
    assert cache.get(users) == result(2)


def test_a_read_that_overlapped_a_write_is_not_stored() -> None:
    cache = ResultCache()
    key = cache.key("SELECT orders", [])
    generation = cache.generation("orders")   # the read starts
    cache.invalidate(["orders"])              # a write starts meanwhile
    assert not cache.put(key, "orders", result(1), 60, generation)
    assert cache.get(key) is None


def test_parameters_of_different_types_are_different_keys() -> None:
    assert ResultCache.key("q", [1]) != ResultCache.key("q", ["1"])


def test_the_least_recently_used_entry_goes_first() -> None:
    cache = ResultCache(max_entries=2)
    a, b, c = (cache.key(x, []) for x in "abc")
    for key in (a, b):
        cache.put(key, "t", result(0), 60, cache.generation("t"))
    cache.get(a)
    cache.put(c, "t", result(0), 60, cache.generation("t"))
    assert cache.get(b) is None and cache.get(a) is not None and cache.get(c) is not None
    cache.invalidate(["t"])
    assert len(cache) == 0
