"""SQLite adapter of :class:`ApiKeyStore`: ``<project>/.flux/keys.db`` for ``flux dev`` and ``flux keys``.

One connection per thread (sqlite3 objects are not shared across threads) and
WAL, so ``flux keys create`` in one process and the dev server in another see
each other's writes at once. The file is created owner-only: it holds no key,
but nobody else needs to read it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from functions.gateway.errors import KeyNameTaken, KeyStoreError
from functions.gateway.keys import ApiKey, ApiKeyStore
from functions.shared.local_io import open_sqlite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    scope TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_used_at REAL,
    revoked INTEGER NOT NULL DEFAULT 0
);
"""
_COLUMNS = "name, prefix, key_hash, scope, created_at, last_used_at, revoked"


def keys_db_path(project_dir: str | Path) -> Path:
    return Path(project_dir) / ".flux" / "keys.db"


class SqliteApiKeyStore(ApiKeyStore):
    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.path = Path(path)
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                self.path.touch()
                os.chmod(self.path, 0o600)
            conn = self._conn()
            conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise KeyStoreError(f"cannot open the API key store at {self.path}: {exc}") from exc

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = open_sqlite(self.path)
            self._local.conn = conn
        return conn

    def insert(self, record: ApiKey) -> None:
        try:
            self._conn().execute(
                f"INSERT INTO api_keys ({_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                (record.name, record.prefix, record.key_hash, record.scope, record.created_at,
                 record.last_used_at, int(record.revoked)),
            )
        except sqlite3.IntegrityError as exc:
            if "api_keys.name" in str(exc):
                raise KeyNameTaken(record.name) from None
            raise KeyStoreError(f"cannot store API key {record.name!r}: {exc}") from exc
        except sqlite3.Error as exc:
            raise KeyStoreError(f"cannot store API key {record.name!r}: {exc}") from exc

    def get_by_hash(self, key_hash: str) -> ApiKey | None:
        return self._one(f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = ?", key_hash)

    def get_by_name(self, name: str) -> ApiKey | None:
        return self._one(f"SELECT {_COLUMNS} FROM api_keys WHERE name = ?", name)

    def list_all(self) -> list[ApiKey]:
        try:
            rows = self._conn().execute(f"SELECT {_COLUMNS} FROM api_keys").fetchall()
        except sqlite3.Error as exc:
            raise KeyStoreError(f"cannot read API keys: {exc}") from exc
        return [_record(row) for row in rows]

    def set_revoked(self, name: str) -> bool:
        try:
            cursor = self._conn().execute("UPDATE api_keys SET revoked = 1 WHERE name = ?", (name,))
        except sqlite3.Error as exc:
            raise KeyStoreError(f"cannot revoke API key {name!r}: {exc}") from exc
        return cursor.rowcount > 0

    def touch(self, record: ApiKey, used_at: float) -> None:
        try:
            self._conn().execute("UPDATE api_keys SET last_used_at = ? WHERE name = ?", (used_at, record.name))
        except sqlite3.Error as exc:
            raise KeyStoreError(f"cannot record use of API key {record.name!r}: {exc}") from exc

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _one(self, sql: str, value: str) -> ApiKey | None:
        try:
            row = self._conn().execute(sql, (value,)).fetchone()
        except sqlite3.Error as exc:
            raise KeyStoreError(f"cannot read API keys: {exc}") from exc
        return _record(row) if row else None


def _record(row: tuple) -> ApiKey:
    name, prefix, key_hash, scope, created_at, last_used_at, revoked = row
    return ApiKey(name=name, prefix=prefix, key_hash=key_hash, scope=scope, created_at=float(created_at),
                  last_used_at=None if last_used_at is None else float(last_used_at), revoked=bool(revoked))


def open_project_key_store(project_dir: str | Path) -> SqliteApiKeyStore:
    """The local key store of a project (what ``flux keys`` and ``flux dev`` share)."""
    return SqliteApiKeyStore(keys_db_path(project_dir))
