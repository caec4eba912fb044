"""The application role: the Postgres role user code reaches the database as, with DML rights only.

DESIGN §7: user code connects as an application role; migrations run as the owner. The
migrator (:func:`functions.engine.migrations.apply_files`, as the owner, under its advisory
lock) calls :func:`maintain_app_role` after the files, every time, so that the role exists,
logs in with the password the migrator was given, and holds exactly these rights in the
``public`` schema (the only schema ``ctx.db`` reads, see :mod:`functions.engine.introspect`):

* ``USAGE`` on the schema, never ``CREATE`` (on Postgres 13/14 ``PUBLIC`` may create in
  ``public``; Flux revokes that, which is the default since Postgres 15);
* ``SELECT, INSERT, UPDATE, DELETE`` on every table, view and materialized view, and
  ``USAGE, SELECT`` on every sequence (``serial``/identity columns); ``ALTER DEFAULT
  PRIVILEGES`` so objects a later migration creates are covered as soon as they exist;
* nothing on Flux's own ``flux_migrations`` (the engine hides it and never queries it; its
  catalog introspection needs no table privilege), no ``TRUNCATE``/``REFERENCES``/``TRIGGER``;
* no ownership of anything (an owner may ``DROP``), not superuser, no ``CREATEROLE``,
  ``CREATEDB``, ``REPLICATION`` or ``BYPASSRLS``, and not a member of the owner role.

Setting the password sends a SCRAM verifier computed here, never the password itself, so a
server that logs DDL (``log_statement = ddl``) never logs it. Every statement is idempotent,
and a second migrator of the same database waits on the advisory lock; two migrators of
different databases of one server may race on ``CREATE ROLE``, which is caught. Role
attributes an owner without superuser may not change (``NOSUPERUSER`` and the like) are
checked instead of set: a pre-existing role that has them is refused, with the fix.
Works on Postgres 13+ and Aurora PostgreSQL (the master user has ``CREATEROLE``, not superuser).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from functions.engine.errors import MigrationError
from functions.engine.pg_cluster import scram_verifier

DEFAULT_APP_ROLE = "flux_app"
SCHEMA = "public"
ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
DML = sql.SQL("SELECT, INSERT, UPDATE, DELETE")
_FORBIDDEN_ATTRIBUTES = ("rolsuper", "rolcreaterole", "rolcreatedb", "rolreplication", "rolbypassrls")


@dataclass(frozen=True, slots=True)
class AppRole:
    """The role's name and the password the migrator sets on it (never in ``repr``)."""

    name: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if not ROLE_NAME.match(self.name) or self.name.startswith("pg_"):
            raise MigrationError(f"application role {self.name!r}: use lower-case letters, digits and '_' "
                                 "(at most 63, not starting with a digit or 'pg_')")
        if not self.password:
            raise MigrationError(f"application role {self.name}: no password was given to the migrator")


def derived_password(owner_password: str, role: str) -> str:
    """The application role's password for a server named by a ``DATABASE_URL``: derived from the owner's.

    A role belongs to the whole server, not to one database, so every checkout and test database
    that migrates through the same owner must set the *same* password, or each migrate would lock
    the others' engines out. Deriving it (HMAC-SHA256 keyed by the owner's password) gives that
    without storing anything on the server; only who knows the owner's password can compute it.
    """
    digest = hmac.new(owner_password.encode(), f"flux-app-role:{role}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


_RETRIES = 5


def maintain_app_role(conn: psycopg.Connection[Any], role: AppRole, *, internal_tables: tuple[str, ...]) -> None:
    """Create or repair ``role`` with DML rights only, in one transaction (see the module docstring).

    Migrators of *other* databases of the server hold other advisory locks and may update the
    role's catalog row at the same moment ("tuple concurrently updated"): the transaction is retried.
    """
    for attempt in range(_RETRIES):
        try:
            _maintain(conn, role, internal_tables)
            return
        except (pg_errors.InternalError_, pg_errors.DuplicateObject, pg_errors.UniqueViolation) as exc:
            if attempt + 1 == _RETRIES:
                raise MigrationError(f"application role {role.name}: {_first_line(exc)}") from None
            time.sleep(0.05 * (attempt + 1))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _maintain(conn: psycopg.Connection[Any], role: AppRole, internal_tables: tuple[str, ...]) -> None:
    try:
        with conn.transaction():
            owner = _scalar(conn, "SELECT current_user")
            if owner == role.name:
                raise MigrationError(f"the application role {role.name} is the role migrations run as; "
                                     "migrations need the owner's credentials, user code the application role's")
            _ensure_exists(conn, role)
            _check_attributes(conn, role)
            conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                sql.Identifier(role.name), sql.Literal(scram_verifier(role.password, secrets.token_bytes(16)))))
            _leave_owner(conn, role, str(owner))
            _check_owns_nothing(conn, role)
            _grant(conn, role, internal_tables)
            _no_create(conn, role)
    except (pg_errors.InternalError_, pg_errors.DuplicateObject, pg_errors.UniqueViolation):
        raise
    except psycopg.Error as exc:
        first = _first_line(exc)
        hint = ""
        if isinstance(exc, pg_errors.InsufficientPrivilege):
            hint = (" (the migrating user needs CREATEROLE, and on Postgres 16+ ADMIN OPTION on a role it did not "
                    f"create: GRANT {role.name} TO <migrating user> WITH ADMIN OPTION; or set \"database\": "
                    "{\"app_role\": false} in flux.json to run user code as the migrating user, not recommended)")
        raise MigrationError(f"application role {role.name}: {first}{hint}") from None


def _scalar(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def _ensure_exists(conn: psycopg.Connection[Any], role: AppRole) -> None:
    if _scalar(conn, "SELECT 1 FROM pg_roles WHERE rolname = %s", (role.name,)):
        return
    try:
        with conn.transaction():   # a savepoint: a concurrent creator (another database's migrator) wins
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role.name)))
    except (pg_errors.DuplicateObject, pg_errors.UniqueViolation):
        pass


def _check_attributes(conn: psycopg.Connection[Any], role: AppRole) -> None:
    row = conn.execute(f"SELECT {', '.join(_FORBIDDEN_ATTRIBUTES)} FROM pg_roles WHERE rolname = %s",
                       (role.name,)).fetchone()
    held = [name[3:].upper() for name, value in zip(_FORBIDDEN_ATTRIBUTES, row or (), strict=False) if value]
    if held:
        raise MigrationError(f"application role {role.name} already exists with {', '.join(held)}; user code must "
                             f"not have that. Fix (as a superuser): ALTER ROLE {role.name} "
                             f"{' '.join('NO' + h for h in held)}")


def _leave_owner(conn: psycopg.Connection[Any], role: AppRole, owner: str) -> None:
    """No membership in the owner role (direct grants are revoked; an indirect path is refused)."""
    if _scalar(conn, "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
                     "JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = %s AND u.rolname = %s", (owner, role.name)):
        conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(owner), sql.Identifier(role.name)))
    if _scalar(conn, "SELECT pg_has_role(%s, %s, 'MEMBER')", (role.name, owner)):
        raise MigrationError(f"application role {role.name} is a member of {owner} through another role; "
                             f"revoke that membership (user code must not act as the owner)")


def _check_owns_nothing(conn: psycopg.Connection[Any], role: AppRole) -> None:
    owned = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = %s "
        "AND c.relnamespace = %s::regnamespace UNION ALL "
        "SELECT n.nspname FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner WHERE r.rolname = %s "
        "ORDER BY 1 LIMIT 5", (role.name, SCHEMA, role.name)).fetchall()
    if owned:
        names = ", ".join(str(r[0]) for r in owned)
        raise MigrationError(f"application role {role.name} owns {names}: an owner may drop and alter it. Fix: "
                             f"ALTER ... OWNER TO the migrating user in a migration")


def _grant(conn: psycopg.Connection[Any], role: AppRole, internal_tables: tuple[str, ...]) -> None:
    name, schema = sql.Identifier(role.name), sql.Identifier(SCHEMA)
    for statement in (
        "GRANT USAGE ON SCHEMA {schema} TO {name}",
        "GRANT {dml} ON ALL TABLES IN SCHEMA {schema} TO {name}",
        "REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA {schema} FROM {name}",
        "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {name}",
        "REVOKE UPDATE ON ALL SEQUENCES IN SCHEMA {schema} FROM {name}",
        "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT {dml} ON TABLES TO {name}",
        "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {name}",
    ):
        conn.execute(sql.SQL(statement).format(schema=schema, name=name, dml=DML))
    for table in internal_tables:
        if _scalar(conn, "SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.{table}",)):
            conn.execute(sql.SQL("REVOKE ALL ON TABLE {}.{} FROM {}").format(schema, sql.Identifier(table), name))


def _no_create(conn: psycopg.Connection[Any], role: AppRole) -> None:
    """No CREATE on the schema, also not through PUBLIC (Postgres 13/14 grant it to PUBLIC on ``public``)."""
    schema = sql.Identifier(SCHEMA)
    conn.execute(sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(schema, sql.Identifier(role.name)))
    if not _scalar(conn, "SELECT has_schema_privilege(%s, %s, 'CREATE')", (role.name, SCHEMA)):
        return
    try:
        with conn.transaction():
            conn.execute(sql.SQL("REVOKE CREATE ON SCHEMA {} FROM PUBLIC").format(schema))
    except pg_errors.InsufficientPrivilege:
        pass
    if _scalar(conn, "SELECT has_schema_privilege(%s, %s, 'CREATE')", (role.name, SCHEMA)):
        raise MigrationError(f"application role {role.name} may still create objects in schema {SCHEMA} (through "
                             f"PUBLIC or another role). Fix (as the schema's owner): REVOKE CREATE ON SCHEMA {SCHEMA} "
                             "FROM PUBLIC")
