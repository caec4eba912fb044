"""Local secrets store: a SQLite file under ``.flux/`` (mode 0600), the adapter `flux dev` reads.

Like a ``.env`` file, values are stored as written; the file lives in the
git-ignored state folder and is readable by its owner only.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from functions.shared.secrets import SecretInfo, SecretsStore, check_name


class SqliteSecretsStore(SecretsStore):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL, "
                         "updated_at REAL NOT NULL)")
        os.chmod(self.path, 0o600)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=10)
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    def get(self, name: str) -> str | None:
        with self._connect() as conn:
            row = conn.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set(self, name: str, value: str) -> None:
        check_name(name)
        with self._connect() as conn:
            conn.execute("INSERT INTO secrets (name, value, updated_at) VALUES (?, ?, ?) "
                         "ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                         (name, value, time.time()))

    def delete(self, name: str) -> bool:
        with self._connect() as conn:
            return conn.execute("DELETE FROM secrets WHERE name = ?", (name,)).rowcount > 0

    def list(self) -> list[SecretInfo]:
        with self._connect() as conn:
            rows = conn.execute("SELECT name, updated_at FROM secrets ORDER BY name").fetchall()
        return [SecretInfo(name, updated) for name, updated in rows]
