"""The Lambda side of the application role, with fakes: who reads which secret, and what a caller is told."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from functions.aws import names
from functions.aws.database import (
    app_role_secret,
    dsn_from_secret,
    explain_unavailable,
    login_refused,
    publish_connection,
)
from functions.aws.entry_engine import make_handler
from functions.aws.lazy_db import LazyDatabase
from functions.engine.migrations import MigrationReport
from functions.shared.errors import DatabaseUnavailable

APP_ARN = "arn:aws:secretsmanager:eu-west-1:1:secret:app-AbCdEf"
APP_SECRET = {"username": "flux_app", "password": "app-pw-0123456789"}


class FakeSecrets:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = dict(values)
        self.put: list[tuple[str, str]] = []

    def get_secret_value(self, SecretId: str) -> dict[str, str]:
        return {"SecretString": self.values[SecretId]}

    def put_secret_value(self, SecretId: str, SecretString: str) -> None:
        self.put.append((SecretId, SecretString))
        self.values[SecretId] = SecretString


def test_the_engine_migrates_as_the_owner_and_sets_up_the_role_from_its_secret(tmp_path: Path) -> None:
    seen: list[tuple[str, Any]] = []
    published: list[tuple[str, dict[str, Any]]] = []

    def migrate(dsn: str, directory: Path, *, app_role: Any = None) -> MigrationReport:
        seen.append((dsn, app_role))
        return MigrationReport(applied=["001.sql"], app_role=app_role.name)

    handler = make_handler(dsn_provider=lambda: "postgresql://owner:pw@db/x", migrate=migrate, schema_dir=tmp_path,
                           app_secret_provider=lambda: dict(APP_SECRET),
                           publish=lambda owner, doc: published.append((owner, doc)) is None)
    answer = handler({"action": "migrate"}, None)
    assert answer["ok"] and answer["result"]["app_role"] == "flux_app"
    ((dsn, role),) = seen
    assert dsn == "postgresql://owner:pw@db/x" and role.name == "flux_app" and role.password == APP_SECRET["password"]
    assert "app-pw" not in repr(role) and "app-pw" not in json.dumps(answer)
    assert published == [("postgresql://owner:pw@db/x", APP_SECRET)]


def test_without_an_application_secret_the_engine_migrates_as_before(tmp_path: Path) -> None:
    calls: list[str] = []
    handler = make_handler(dsn_provider=lambda: "postgresql://db/x", schema_dir=tmp_path,
                           migrate=lambda dsn, directory: calls.append(dsn) or MigrationReport(),
                           app_secret_provider=lambda: None)
    assert handler({"action": "migrate"}, None)["ok"] and calls == ["postgresql://db/x"]


def test_the_application_secret_must_have_username_and_password() -> None:
    env = {names.DATABASE_APP_SECRET_ARN: APP_ARN}
    assert app_role_secret(env, secrets_client=FakeSecrets({APP_ARN: json.dumps(APP_SECRET)})) == APP_SECRET
    assert app_role_secret({}, secrets_client=FakeSecrets({})) is None
    with pytest.raises(DatabaseUnavailable, match="not a JSON object with username and password"):
        app_role_secret(env, secrets_client=FakeSecrets({APP_ARN: json.dumps({"username": "flux_app"})}))


def test_publish_writes_the_address_but_never_the_owner_credentials_and_only_once() -> None:
    env = {names.DATABASE_APP_SECRET_ARN: APP_ARN}
    client = FakeSecrets({APP_ARN: json.dumps(APP_SECRET)})
    owner = "postgresql://admin:owner-secret@db.example.com:6432/shop?sslmode=verify-full"
    assert publish_connection(env, owner, dict(APP_SECRET), secrets_client=client)
    ((arn, text),) = client.put
    written = json.loads(text)
    assert arn == APP_ARN and "owner-secret" not in text and "admin" not in text
    assert written == {**APP_SECRET, "host": "db.example.com", "port": 6432, "dbname": "shop", "sslmode": "verify-full"}
    assert not publish_connection(env, owner, written, secrets_client=client)   # unchanged: no second write
    # A provisioned cluster: the runtime has DATABASE_HOST (the proxy), nothing to publish
    assert not publish_connection({**env, names.DATABASE_HOST: "proxy"}, owner, dict(APP_SECRET),
                                  secrets_client=client)


def test_the_application_role_connects_with_the_owners_tls_setting() -> None:
    """A database.url without sslmode: the owner connects with libpq's default (prefer), so must the app role
    (requiring TLS there made every query of a url-mode stack wait 5 s and answer 503)."""
    env = {names.DATABASE_APP_SECRET_ARN: APP_ARN}
    client = FakeSecrets({APP_ARN: json.dumps(APP_SECRET)})
    assert publish_connection(env, "postgresql://admin:pw@10.0.0.5:5432/shop", dict(APP_SECRET),
                              secrets_client=client)
    written = json.loads(client.put[0][1])
    assert written["sslmode"] == "prefer"
    assert "sslmode=prefer" in dsn_from_secret(json.dumps(written), {})
    # Without a published setting the runtime requires TLS; an operator's DATABASE_SSLMODE wins over both
    assert "sslmode=require" in dsn_from_secret(json.dumps({**APP_SECRET, "host": "h"}), {})
    assert "sslmode=verify-full" in dsn_from_secret(json.dumps(written), {names.DATABASE_SSLMODE: "verify-full"})


def test_the_runtime_builds_its_dsn_from_the_application_secret() -> None:
    dsn = dsn_from_secret(json.dumps({**APP_SECRET, "dbname": "shop"}),
                          {names.DATABASE_HOST: "proxy.example", names.DATABASE_PORT: "6543"})
    assert "user=flux_app" in dsn and "host=proxy.example" in dsn and "dbname=shop" in dsn and "port=6543" in dsn
    # database.url stack before its first migrate: no host yet in the application secret
    with pytest.raises(DatabaseUnavailable, match=r"not set up yet .*run `flux db migrate --stage dev`"):
        dsn_from_secret(json.dumps(APP_SECRET), {names.STAGE: "dev"})


@pytest.mark.parametrize(("libpq", "reason"), [
    ('connection failed: FATAL:  role "flux_app" does not exist', "does not exist yet"),
    ('FATAL:  password authentication failed for user "flux_app"', "password does not match"),
    ("FATAL: This RDS Proxy has no credentials for the role flux_app. Check the credentials", "no secret for it"),
])
def test_a_login_the_role_is_not_set_up_for_says_to_migrate(libpq: str, reason: str) -> None:
    error = login_refused(Exception(libpq), {names.STAGE: "prod"})
    assert error is not None and error.status == 503 and reason in error.message
    assert "flux db migrate --stage prod" in error.message and "flux_app" not in error.message
    assert error.headers["Retry-After"]
    assert login_refused(Exception("connection refused"), {}) is None
    assert login_refused(None, {}) is None


class _Executor:
    def __init__(self, error: BaseException | None) -> None:
        self.error = error

    async def login_error(self) -> BaseException | None:
        return self.error


class _Engine:
    def __init__(self, login: BaseException | None) -> None:
        self.executor = _Executor(login)

    async def query(self, query: Any, call: Any) -> dict[str, Any]:
        raise DatabaseUnavailable("database unavailable: no connection within 5 s", headers={"Retry-After": "5"})

    async def batch(self, queries: Any, call: Any) -> list[dict[str, Any]]:
        return await self.query(queries, call)  # type: ignore[return-value]


@pytest.mark.parametrize("login", [Exception('FATAL:  role "flux_app" does not exist'), None])
def test_lazy_database_explains_a_503_only_when_the_role_is_the_cause(login: BaseException | None) -> None:
    env = {names.STAGE: "dev"}

    async def build() -> Any:
        return _Engine(login)

    db = LazyDatabase(build, explain=lambda engine, exc: explain_unavailable(engine, exc, env))
    for call in (db.query, db.batch):
        with pytest.raises(DatabaseUnavailable) as caught:
            asyncio.run(call({}, None))
        if login is None:
            assert caught.value.message == "database unavailable: no connection within 5 s"
        else:
            assert "run `flux db migrate --stage dev`" in caught.value.message
