"""One embedded Postgres for the whole run, with the bench schema and seed, shared by every stack.

The schema is the Flux bench app's own ``schema/`` folder, applied with the engine's
migration runner (the code ``flux dev`` runs), so ``flux dev`` finds nothing pending and
every other stack sees the very same table, index and 10,000 seed rows. Between runs the
rows the insert scenario added are deleted and the table vacuumed, so each stack's select
reads the same data.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

import psycopg

from bench.procs import all_stats, tree
from functions.engine.embedded_pg import EmbeddedPostgres
from functions.engine.migrations import apply_migrations

SCHEMA_DIR = Path(__file__).resolve().parent / "apps" / "flux" / "schema"
SEED_ROWS = 10_000


class BenchDatabase:
    def __init__(self) -> None:
        # Under /tmp (world-traversable) because as root the server runs as another user.
        self._dir = Path(tempfile.mkdtemp(prefix="flux-bench-pg-"))
        self.server = EmbeddedPostgres(self._dir / "data", durable=False)
        self.dsn = ""

    def start(self) -> str:
        self.dsn = self.server.start()
        apply_migrations(self.dsn, SCHEMA_DIR)
        self.reset()
        return self.dsn

    def reset(self) -> None:
        """Back to the seed: drop inserted rows, vacuum, fresh statistics."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM outbox")
            conn.execute("DELETE FROM orders")
            conn.execute("DELETE FROM items WHERE id > %s", [SEED_ROWS])
            for table in ("items", "orders", "outbox"):
                conn.execute(f"VACUUM ANALYZE {table}")

    def row_count(self) -> int:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM items").fetchone()
        return int(row[0]) if row else 0

    def version(self) -> str:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def pids(self) -> list[int]:
        """The postmaster and its backends (to measure Postgres' own CPU, kept apart from the stacks')."""
        info = self.server.info()
        return [] if info is None else [p.pid for p in tree(all_stats(), [info.pid])]

    def postmaster_pid(self) -> int | None:
        info = self.server.info()
        return None if info is None else info.pid

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.server.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
