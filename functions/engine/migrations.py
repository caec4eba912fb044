"""Migrations: ``schema/*.sql`` applied in filename order, each once, each in its own transaction.

Applied files are recorded in ``flux_migrations`` with a SHA-256 checksum; editing a file
after it was applied is refused (add a new file instead) because the database would no
longer match what the file says. A session advisory lock serialises concurrent runners
(``flux dev`` starting while ``flux db migrate`` runs, two Lambda invocations). A file
whose first line is ``-- flux:no-transaction`` runs outside a transaction, for
statements Postgres refuses inside one (``CREATE INDEX CONCURRENTLY``): it is split
into statements (:mod:`functions.engine.sql_split`) and each runs on its own, because
Postgres wraps a multi-statement query in one implicit transaction. If one of them
fails, the ones before it stay applied and the file is not recorded, so it runs again
from the top next time: write such files to be repeatable (``IF NOT EXISTS``).

Given an :class:`~functions.engine.app_role.AppRole`, the runner then creates or repairs the
application role user code connects as (DML rights only, see :mod:`functions.engine.app_role`),
under the same lock, also after a failed file (the files before it are applied and must be
reachable), so every migrate leaves the role's rights matching the schema.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from functions.engine.app_role import AppRole, maintain_app_role
from functions.engine.errors import MigrationError
from functions.engine.executor import translate_error
from functions.engine.sql_split import UnterminatedSql, split_statements

MIGRATIONS_TABLE = "flux_migrations"
NO_TRANSACTION = "-- flux:no-transaction"
_LOCK_KEY = 0x466C7578_4D696772  # "FluxMigr": one advisory lock for every runner of this database

_CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    filename text PRIMARY KEY,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    duration_ms integer NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class MigrationFile:
    name: str
    path: Path
    sql: str
    checksum: str

    @property
    def transactional(self) -> bool:
        first = self.sql.lstrip().split("\n", 1)[0].strip().lower()
        return first != NO_TRANSACTION


@dataclass(slots=True)
class MigrationReport:
    applied: list[str] = field(default_factory=list)
    already_applied: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)   # recorded in the database, gone from disk
    duration_ms: float = 0.0
    app_role: str | None = None   # the application role maintained by this run (its name only)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def discover(schema_dir: str | Path) -> list[MigrationFile]:
    """Every ``*.sql`` file directly in ``schema_dir``, in filename order."""
    root = Path(schema_dir)
    if not root.is_dir():
        return []
    files = []
    for path in sorted(root.glob("*.sql"), key=lambda p: p.name):
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MigrationError(f"{path.name}: not UTF-8 text") from None
        files.append(MigrationFile(path.name, path, text, hashlib.sha256(raw).hexdigest()))
    return files


def applied_migrations(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """filename → checksum of what the database has recorded (empty before the first migration)."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [f"public.{MIGRATIONS_TABLE}"]).fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute(f"SELECT filename, checksum FROM {MIGRATIONS_TABLE} ORDER BY filename").fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def migration_status(dsn: str, schema_dir: str | Path, *, connect_timeout_s: float = 5.0) -> list[dict[str, str]]:
    """Each file with its state: ``applied``, ``pending`` or ``changed``; plus recorded files now ``missing``."""
    files = discover(schema_dir)
    with _connect(dsn, connect_timeout_s) as conn:
        recorded = applied_migrations(conn)
    status = []
    for f in files:
        state = "pending" if f.name not in recorded else ("applied" if recorded[f.name] == f.checksum else "changed")
        status.append({"filename": f.name, "state": state})
    status += [{"filename": name, "state": "missing"} for name in recorded if name not in {f.name for f in files}]
    return status


def apply_migrations(dsn: str, schema_dir: str | Path, *, connect_timeout_s: float = 5.0,
                     app_role: AppRole | None = None) -> MigrationReport:
    """Apply every pending file; stop at the first failure (that file's transaction is rolled back).

    ``dsn`` is the owner's; with ``app_role`` the application role is maintained afterwards.
    """
    files = discover(schema_dir)
    with _connect(dsn, connect_timeout_s) as conn:
        return apply_files(conn, files, app_role=app_role)


def apply_files(conn: psycopg.Connection[Any], files: list[MigrationFile], *,
                app_role: AppRole | None = None) -> MigrationReport:
    started = time.perf_counter()
    report = MigrationReport()
    conn.execute("SELECT pg_advisory_lock(%s)", [_LOCK_KEY])
    try:
        conn.execute(_CREATE_TABLE)
        try:
            _apply_pending(conn, files, report)
        except MigrationError:
            if app_role is not None:   # what was applied must be reachable; the file's error stays the one raised
                with contextlib.suppress(MigrationError):
                    maintain_app_role(conn, app_role, internal_tables=(MIGRATIONS_TABLE,))
            raise
        if app_role is not None:
            maintain_app_role(conn, app_role, internal_tables=(MIGRATIONS_TABLE,))
            report.app_role = app_role.name
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", [_LOCK_KEY])
    report.duration_ms = round((time.perf_counter() - started) * 1000, 3)
    return report


def _apply_pending(conn: psycopg.Connection[Any], files: list[MigrationFile], report: MigrationReport) -> None:
    recorded = applied_migrations(conn)
    names = {f.name for f in files}
    report.missing_files = [name for name in recorded if name not in names]
    for f in files:
        if f.name in recorded:
            if recorded[f.name] != f.checksum:
                raise MigrationError(f"{f.name} changed after it was applied (checksum differs); "
                                     "add a new migration file instead of editing an applied one")
            report.already_applied.append(f.name)
            continue
        _apply_one(conn, f)
        report.applied.append(f.name)


def _apply_one(conn: psycopg.Connection[Any], f: MigrationFile) -> None:
    started = time.perf_counter()
    record = f"INSERT INTO {MIGRATIONS_TABLE} (filename, checksum, duration_ms) VALUES (%s, %s, %s)"
    try:
        if f.transactional:
            with conn.transaction():
                conn.execute(f.sql)  # no parameters: sent as written, several statements allowed
                conn.execute(record, [f.name, f.checksum, _elapsed_ms(started)])
        else:
            _apply_statements(conn, f)
            conn.execute(record, [f.name, f.checksum, _elapsed_ms(started)])
    except psycopg.Error as exc:
        raise MigrationError(f"{f.name}{_line_of(exc, f.sql)}: {str(exc).strip().splitlines()[0]}") from None


def _apply_statements(conn: psycopg.Connection[Any], f: MigrationFile) -> None:
    """A no-transaction file, one statement at a time (autocommit: each statement is its own transaction)."""
    try:
        statements = split_statements(f.sql)
    except UnterminatedSql as exc:
        raise MigrationError(f"{f.name} line {_line_at(f.sql, exc.offset)}: {exc}") from None
    for number, statement in enumerate(statements, start=1):
        try:
            conn.execute(statement.text)   # no parameters: the simple query protocol, exactly one statement
        except psycopg.Error as exc:
            position = _position(exc)
            offset = statement.offset + (position - 1 if position else 0)
            raise MigrationError(f"{f.name} line {_line_at(f.sql, offset)} (statement {number} of {len(statements)}, "
                                 "outside a transaction: the ones before it stay applied): "
                                 f"{str(exc).strip().splitlines()[0]}") from None


def _line_at(text: str, offset: int) -> int:
    return text[:offset].count("\n") + 1


def _position(exc: psycopg.Error) -> int | None:
    """Postgres' 1-based character position of the error in the statement, when it gave one."""
    try:
        return int(getattr(exc.diag, "statement_position", None) or 0) or None
    except ValueError:
        return None


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _line_of(exc: psycopg.Error, text: str) -> str:
    position = getattr(exc.diag, "statement_position", None)
    if not position:
        return ""
    try:
        offset = int(position)
    except ValueError:
        return ""
    return f" line {text[:offset].count(chr(10)) + 1}"


def _connect(dsn: str, connect_timeout_s: float) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=max(2, int(connect_timeout_s)),
                               application_name="flux-migrate")
    except psycopg.Error as exc:
        raise translate_error(exc, "", statement_timeout_ms=0, connect_timeout_s=connect_timeout_s) from None
