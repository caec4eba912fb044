"""API key format, header extraction and the store port's own logic (over an in-memory adapter)."""

from __future__ import annotations

from typing import Any

import pytest

from functions.gateway.errors import InvalidKeyName, InvalidScope, KeyNameTaken, KeyStoreError
from functions.gateway.keys import (
    DISPLAY_PREFIX_LEN,
    KEY_PREFIX,
    generate_key,
    hash_key,
    looks_like_key,
    presented_key,
)


def test_generated_keys_have_prefix_entropy_and_are_distinct() -> None:
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert key.startswith(KEY_PREFIX)
        assert len(key) - len(KEY_PREFIX) == 43  # 32 random bytes, URL-safe base64
        assert looks_like_key(key)


@pytest.mark.parametrize("value", ["", "flx_live_", "flx_test_" + "a" * 43, " " + "flx_live_" + "a" * 43,
                                   "flx_live_" + "a" * 43 + " ", "flx_live_" + "a" * 43 + "\n",
                                   "flx_live_" + "a" * 42, "flx_live_" + "a" * 44, "flx_live_" + "a" * 42 + "!"])
def test_shape_check_refuses_anything_but_an_exact_key(value: str) -> None:
    assert not looks_like_key(value)


def test_hash_is_sha256_hex_of_the_whole_key() -> None:
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert len(hash_key(generate_key())) == 64


@pytest.mark.parametrize("headers,expected", [
    ({"x-api-key": "K"}, "K"),
    ({"X-Api-Key": "K"}, "K"),
    ({"authorization": "Bearer flx_live_abc"}, "flx_live_abc"),
    ({"authorization": "bearer flx_live_abc"}, "flx_live_abc"),
    ({"authorization": "Bearer eyJhbGciOi.x.y"}, None),   # a JWT is not an API key
    ({"authorization": "Basic flx_live_abc"}, None),
    ({"x-api-key": "A", "authorization": "Bearer flx_live_B"}, "A"),
    ({}, None),
])
def test_presented_key(headers: dict[str, str], expected: str | None) -> None:
    assert presented_key(headers) == expected


def test_create_stores_hash_and_prefix_only(helpers: Any, clock: Any) -> None:
    store = helpers.MemoryKeyStore(clock)
    record, key = store.create("ci", "invoke")
    assert record.key_hash == hash_key(key)
    assert record.prefix == key[:DISPLAY_PREFIX_LEN]
    assert record.created_at == clock()
    assert key not in repr(store.records)
    assert "key_hash" not in record.public()


def test_authenticate_accepts_the_key_and_refuses_everything_else(helpers: Any, clock: Any) -> None:
    store = helpers.MemoryKeyStore(clock)
    _, key = store.create("ci")
    assert store.authenticate(key).name == "ci"
    assert store.authenticate(key + " ") is None
    assert store.authenticate(" " + key) is None
    assert store.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert store.authenticate(generate_key()) is None
    assert store.authenticate("") is None


def test_revoked_keys_are_refused_but_still_listed(helpers: Any, clock: Any) -> None:
    store = helpers.MemoryKeyStore(clock)
    _, key = store.create("ci")
    assert store.revoke("ci") is True
    assert store.authenticate(key) is None
    assert store.lookup(key).revoked is True
    assert [r.name for r in store.list()] == ["ci"]
    assert store.revoke("nope") is False


def test_last_used_is_written_at_most_once_per_interval(helpers: Any, clock: Any) -> None:
    store = helpers.MemoryKeyStore(clock)
    _, key = store.create("ci")
    for _ in range(5):
        assert store.authenticate(key) is not None
    assert store.touches == 1
    clock.advance(store.touch_interval_s)
    store.authenticate(key)
    assert store.touches == 2
    assert store.get_by_name("ci").last_used_at == clock()


def test_a_failing_touch_does_not_refuse_a_valid_key(helpers: Any, clock: Any) -> None:
    store = helpers.MemoryKeyStore(clock)
    _, key = store.create("ci")

    def broken(record: Any, used_at: float) -> None:
        raise KeyStoreError("disk full")

    store.touch = broken  # type: ignore[method-assign]
    assert store.authenticate(key).name == "ci"


def test_names_and_scopes_are_checked(helpers: Any, clock: Any) -> None:
    store = helpers.MemoryKeyStore(clock)
    store.create("ci")
    with pytest.raises(KeyNameTaken):
        store.create("ci")
    with pytest.raises(InvalidKeyName):
        store.create("has space")
    with pytest.raises(InvalidKeyName):
        store.create("")
    with pytest.raises(InvalidKeyName):
        store.create("ci\n")
    with pytest.raises(InvalidScope):
        store.create("x", "root")
