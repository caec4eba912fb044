"""The ApiKeyStore contract, run against SQLite and DynamoDB (moto): same behaviour, no plaintext at rest."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from functions.gateway.errors import KeyNameTaken, KeyStoreError
from functions.gateway.keys import ApiKeyStore, hash_key
from functions.gateway.keys_dynamodb import DynamoApiKeyStore
from functions.gateway.keys_sqlite import SqliteApiKeyStore, keys_db_path


class Clock:
    now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApiKeyStore]:
    clock = Clock()
    if request.param == "sqlite":
        yield SqliteApiKeyStore(keys_db_path(tmp_path), clock=clock)
    else:
        client = request.getfixturevalue("dynamodb")
        yield DynamoApiKeyStore("flux-keys", client, clock=clock)


def raw_contents(store: ApiKeyStore) -> str:
    """Everything the store holds at rest, as text."""
    if isinstance(store, SqliteApiKeyStore):
        store.close()
        blobs = [p.read_bytes() for p in store.path.parent.glob("keys.db*")]
        return b"".join(blobs).decode("latin-1")
    assert isinstance(store, DynamoApiKeyStore)
    return repr(store.client.scan(TableName=store.table)["Items"])


def test_create_then_authenticate(store: ApiKeyStore) -> None:
    record, key = store.create("ci", "invoke")
    found = store.authenticate(key)
    assert found is not None
    assert (found.name, found.scope, found.prefix) == ("ci", "invoke", key[:12])
    assert found.created_at == record.created_at
    assert store.get_by_name("ci").key_hash == hash_key(key)


def test_wrong_whitespace_and_unknown_keys_are_refused(store: ApiKeyStore) -> None:
    _, key = store.create("ci")
    for bad in ("", " " + key, key + " ", f" {key} ", key.upper(), key[:-1], "flx_live_" + "A" * 43):
        assert store.authenticate(bad) is None, repr(bad)


def test_revoke(store: ApiKeyStore) -> None:
    _, key = store.create("ci")
    _, other = store.create("web")
    assert store.revoke("ci") is True
    assert store.authenticate(key) is None
    assert store.authenticate(other) is not None
    assert store.revoke("missing") is False
    listed = {k.name: k.revoked for k in store.list()}
    assert listed == {"ci": True, "web": False}


def test_names_are_unique_even_after_revoke(store: ApiKeyStore) -> None:
    store.create("ci")
    with pytest.raises(KeyNameTaken):
        store.create("ci", "admin")
    store.revoke("ci")
    with pytest.raises(KeyNameTaken):
        store.create("ci")
    assert len(store.list()) == 1


def test_last_used_is_recorded_and_throttled(store: ApiKeyStore) -> None:
    _, key = store.create("ci")
    assert store.get_by_name("ci").last_used_at is None
    store.authenticate(key)
    first = store.get_by_name("ci").last_used_at
    assert first == store.clock()
    store.clock.now += 10  # type: ignore[attr-defined]
    store.authenticate(key)
    assert store.get_by_name("ci").last_used_at == first
    store.clock.now += 60  # type: ignore[attr-defined]
    store.authenticate(key)
    assert store.get_by_name("ci").last_used_at == store.clock()


def test_list_is_ordered_and_carries_no_secret(store: ApiKeyStore) -> None:
    keys = []
    for i, name in enumerate(["b", "a", "c"]):
        store.clock.now += i  # type: ignore[attr-defined]
        keys.append(store.create(name, "admin" if name == "a" else "invoke")[1])
    listed = store.list()
    assert [k.name for k in listed] == ["b", "a", "c"]
    assert [k.scope for k in listed] == ["invoke", "admin", "invoke"]
    text = repr([k.public() for k in listed])
    assert not any(key in text for key in keys)
    assert not any(hash_key(key) in text for key in keys)


def test_store_holds_no_plaintext_key(store: ApiKeyStore) -> None:
    keys = [store.create(f"k{i}")[1] for i in range(5)]
    for key in keys:
        store.authenticate(key)
    contents = raw_contents(store)
    for key in keys:
        assert hash_key(key) in contents  # sanity: we are looking at the real data
        assert key not in contents
        assert key[12:] not in contents  # not even the secret part after the shown prefix


def test_sqlite_file_is_owner_only(tmp_path: Path) -> None:
    store = SqliteApiKeyStore(tmp_path / ".flux" / "keys.db")
    assert (store.path.stat().st_mode & 0o777) == 0o600


def test_sqlite_store_is_shared_between_instances(tmp_path: Path) -> None:
    writer = SqliteApiKeyStore(keys_db_path(tmp_path))
    reader = SqliteApiKeyStore(keys_db_path(tmp_path))
    _, key = writer.create("ci")
    assert reader.authenticate(key).name == "ci"
    writer.revoke("ci")
    assert reader.authenticate(key) is None


def test_dynamodb_failures_become_key_store_errors(aws_env: None) -> None:
    from moto import mock_aws

    with mock_aws():
        import boto3

        store = DynamoApiKeyStore("no-such-table", boto3.client("dynamodb", region_name="us-east-1"))
        with pytest.raises(KeyStoreError):
            store.authenticate("flx_live_" + "A" * 43)
        with pytest.raises(KeyStoreError):
            store.create("ci")
        with pytest.raises(KeyStoreError):
            store.list()


def test_sqlite_unusable_path_is_a_key_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(KeyStoreError):
        SqliteApiKeyStore(blocker / "keys.db")


def test_dynamodb_item_layout(dynamodb: Any) -> None:
    store = DynamoApiKeyStore("flux-keys", dynamodb)
    _, key = store.create("ci")
    items = {i["pk"]["S"]: i for i in dynamodb.scan(TableName="flux-keys")["Items"]}
    assert set(items) == {"name#ci", "key#" + hash_key(key)}
    assert items["name#ci"]["key_hash"]["S"] == hash_key(key)
    assert items["key#" + hash_key(key)]["revoked"]["BOOL"] is False
