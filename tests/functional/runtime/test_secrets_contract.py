"""The same contract for the local SQLite secrets store and the Secrets Manager adapter (moto)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from functions.runtime.aws_secrets import SecretsManagerStore
from functions.runtime.local_secrets import SqliteSecretsStore
from functions.shared.secrets import SecretsError, SecretsStore


@pytest.fixture(params=["sqlite", "secretsmanager"])
def store(request, tmp_path, monkeypatch) -> Iterator[SecretsStore]:
    if request.param == "sqlite":
        yield SqliteSecretsStore(tmp_path / "secrets.db")
        return
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        client.create_secret(Name="flux/other/prod/API_TOKEN", SecretString="not-ours")
        yield SecretsManagerStore.for_stage("shop", "prod", client=client)


def test_set_get_overwrite_delete(store):
    assert store.get("API_TOKEN") is None
    store.set("API_TOKEN", "first")
    assert store.get("API_TOKEN") == "first"
    store.set("API_TOKEN", "second")
    assert store.get("API_TOKEN") == "second"
    assert store.delete("API_TOKEN") is True
    assert store.get("API_TOKEN") is None
    assert store.delete("API_TOKEN") is False
    store.set("API_TOKEN", "again")
    assert store.get("API_TOKEN") == "again"


def test_list_names_only_own_prefix_sorted(store):
    store.set("b_secret", "1")
    store.set("A_SECRET", "2")
    names = [item.name for item in store.list()]
    assert names == sorted(["A_SECRET", "b_secret"])
    assert all(item.updated_at > 0 for item in store.list())


def test_bad_names_are_refused(store):
    with pytest.raises(SecretsError):
        store.set("../escape", "x")
    with pytest.raises(SecretsError):
        store.set("has space", "x")


def test_sqlite_file_is_private(tmp_path):
    SqliteSecretsStore(tmp_path / "s.db").set("X_KEY", "v")
    assert os.stat(tmp_path / "s.db").st_mode & 0o077 == 0
