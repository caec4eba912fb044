"""Shared Postgres for integration and e2e tests: one embedded server per test session, a fresh database per module.

``pg_server_dsn`` (session) is the server's maintenance database; ``pg_dsn`` (module)
is a database created for the requesting test module and dropped after it, so modules
never see each other's tables. Set ``FLUX_TEST_DATABASE_URL`` to use an existing server
instead of starting one (the per-module databases are still created on it).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from functions.engine.embedded_pg import EmbeddedPostgres


@pytest.fixture(scope="session")
def pg_server_dsn() -> Iterator[str]:
    external = os.environ.get("FLUX_TEST_DATABASE_URL")
    if external:
        yield external
        return
    # Not under pytest's tmp_path: the server lives for the whole session, and pytest prunes and
    # re-creates its tmp tree when other xdist workers start.
    base = Path(tempfile.mkdtemp(prefix="flux-pg-test-"))
    server = EmbeddedPostgres(base / "data", durable=False)
    dsn = server.start()
    try:
        yield dsn
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def scratch_database(server_dsn: str, name: str) -> Iterator[str]:
    """A new, empty database on the server, dropped afterwards (even if connections are left open)."""
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(server_dsn, name)
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def pg_dsn(pg_server_dsn: str, request: pytest.FixtureRequest) -> Iterator[str]:
    name = "t_" + re.sub(r"[^a-z0-9_]", "_", request.module.__name__.rsplit(".", 1)[-1].lower())[:50]
    with scratch_database(pg_server_dsn, name) as dsn:
        yield dsn


def with_database(dsn: str, database: str) -> str:
    """The same server DSN pointing at another database (URL or key=value form)."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))
    return psycopg.conninfo.make_conninfo(dsn, dbname=database)


@pytest.fixture
def fresh_database_url(pg_server_dsn: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database of its own for one test (e2e projects point DATABASE_URL at it)."""
    name = "e_" + re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:50]
    with scratch_database(pg_server_dsn, name) as dsn:
        yield dsn


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a region for moto; no profile, so nothing can reach a real account."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SECURITY_TOKEN": "testing", "AWS_SESSION_TOKEN": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
