"""The application role on a real Postgres: what user code may and may not do, and that migrations keep it so.

Migrations run as the owner (the session server's superuser, like the embedded cluster's ``postgres``)
and maintain the role; every assertion about privileges connects *as the role* and tries the statement.
The role is cluster-wide, so this module uses a name of its own.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import make_conninfo

from functions.engine.app_role import AppRole, derived_password
from functions.engine.errors import MigrationError
from functions.engine.migrations import apply_migrations
from functions.engine.service import DataEngine
from functions.shared.context import CallContext
from functions.shared.errors import PermissionDenied
from functions.shared.spans import MemorySink

pytestmark = pytest.mark.integration

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop" / "schema"
ROLE = AppRole("flux_app_it", "it-app-password-0123456789")


def as_role(dsn: str, role: AppRole = ROLE) -> psycopg.Connection[Any]:
    return psycopg.connect(make_conninfo(dsn, user=role.name, password=role.password), autocommit=True)


@pytest.fixture(scope="module")
def shop_dsn(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    schema = tmp_path_factory.mktemp("schema")
    for path in sorted(SHOP.glob("*.sql")):
        (schema / path.name).write_bytes(path.read_bytes())
    report = apply_migrations(pg_dsn, schema, app_role=ROLE)
    assert report.app_role == ROLE.name and "001_catalog.sql" in report.applied
    return pg_dsn


def test_the_role_reads_and_writes_the_shop_tables(shop_dsn: str) -> None:
    with as_role(shop_dsn) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (ROLE.name,)
        (product,) = conn.execute("SELECT id FROM products ORDER BY id LIMIT 1").fetchone()  # type: ignore[misc]
        (user_id,) = conn.execute("SELECT id FROM users ORDER BY id LIMIT 1").fetchone()  # type: ignore[misc]
        (order_id,) = conn.execute(  # type: ignore[misc]
            "INSERT INTO orders (user_id, customer_email, total) VALUES (%s, 'a@b.c', 12) RETURNING id",
            [user_id]).fetchone()
        conn.execute("INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES (%s, %s, 1, 1)",
                     [order_id, product])
        assert conn.execute("UPDATE orders SET total = 13 WHERE id = %s", [order_id]).rowcount == 1
        assert conn.execute("DELETE FROM order_items WHERE order_id = %s", [order_id]).rowcount == 1
        assert conn.execute("DELETE FROM orders WHERE id = %s", [order_id]).rowcount == 1


@pytest.mark.parametrize("statement", [
    "CREATE TABLE app_made (id int)",
    "DROP TABLE orders",
    "ALTER TABLE orders ADD COLUMN hacked int",
    "TRUNCATE orders",
    "CREATE INDEX app_ix ON orders (total)",
    "CREATE SCHEMA app_schema",
    "CREATE ROLE app_child",
    "CREATE TRIGGER t BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
    "SELECT * FROM flux_migrations",
    "INSERT INTO flux_migrations (filename, checksum, duration_ms) VALUES ('999_x.sql', 'x', 0)",
    "DELETE FROM flux_migrations",
    "UPDATE flux_migrations SET checksum = 'x'",
    "SELECT setval('orders_id_seq', 1)",
])
def test_the_role_cannot_change_the_schema_or_touch_flux_bookkeeping(shop_dsn: str, statement: str) -> None:
    with as_role(shop_dsn) as conn, pytest.raises(pg_errors.InsufficientPrivilege):
        conn.execute(statement)


def test_the_role_has_no_dangerous_attributes_and_is_not_the_owner(shop_dsn: str) -> None:
    with psycopg.connect(shop_dsn) as conn:
        row = conn.execute("SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolcanlogin, "
                           "pg_has_role(%s, current_user, 'MEMBER'), rolpassword FROM pg_authid WHERE rolname = %s",
                           [ROLE.name, ROLE.name]).fetchone()
    assert row is not None
    assert row[:5] == (False,) * 5 and row[5] is True and row[6] is False
    # The server got a SCRAM verifier, never the password itself
    assert str(row[7]).startswith("SCRAM-SHA-256$") and ROLE.password not in str(row[7])


def test_a_table_added_by_a_later_migration_is_reachable(shop_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "001_later.sql").write_text("CREATE TABLE later_things (id serial PRIMARY KEY, name text);\n"
                                            "CREATE VIEW later_names AS SELECT name FROM later_things;\n")
    apply_migrations(shop_dsn, tmp_path, app_role=ROLE)
    with as_role(shop_dsn) as conn:
        conn.execute("INSERT INTO later_things (name) VALUES ('a')")   # the serial's sequence too
        assert conn.execute("SELECT name FROM later_names").fetchall() == [("a",)]
        with pytest.raises(pg_errors.InsufficientPrivilege):
            conn.execute("DROP TABLE later_things CASCADE")


def test_default_privileges_cover_a_table_made_outside_a_migrate(shop_dsn: str) -> None:
    with psycopg.connect(shop_dsn, autocommit=True) as owner:
        owner.execute("CREATE TABLE made_by_hand (id int)")
    with as_role(shop_dsn) as conn:
        conn.execute("INSERT INTO made_by_hand VALUES (1)")
        assert conn.execute("SELECT count(*) FROM made_by_hand").fetchone() == (1,)


def test_migrate_is_idempotent_concurrency_safe_and_repairs_drift(shop_dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(shop_dsn, autocommit=True) as owner:   # drift: a grant too many, a right taken away
        owner.execute(sql.SQL("GRANT TRUNCATE ON orders TO {}").format(sql.Identifier(ROLE.name)))
        owner.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(ROLE.name)))
        owner.execute(sql.SQL("REVOKE SELECT ON products FROM {}").format(sql.Identifier(ROLE.name)))
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            apply_migrations(shop_dsn, tmp_path, app_role=ROLE)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with as_role(shop_dsn) as conn:
        assert conn.execute("SELECT count(*) > 0 FROM products").fetchone() == (True,)
        for statement in ("TRUNCATE orders", "CREATE TABLE x (id int)"):
            with pytest.raises(pg_errors.InsufficientPrivilege):
                conn.execute(statement)


def test_a_new_password_is_set_on_the_next_migrate(shop_dsn: str, tmp_path: Path) -> None:
    rotated = AppRole(ROLE.name, "rotated-password-abcdefghij")
    try:
        apply_migrations(shop_dsn, tmp_path, app_role=rotated)
        with as_role(shop_dsn, rotated) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (ROLE.name,)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            as_role(shop_dsn).close()
    finally:
        apply_migrations(shop_dsn, tmp_path, app_role=ROLE)


def test_a_role_with_powers_or_owning_tables_is_refused(shop_dsn: str, tmp_path: Path) -> None:
    powerful = AppRole("flux_app_it_powerful", "x" * 20)
    with psycopg.connect(shop_dsn, autocommit=True) as owner:
        owner.execute("DROP ROLE IF EXISTS flux_app_it_powerful")
        owner.execute("CREATE ROLE flux_app_it_powerful LOGIN CREATEDB")
    try:
        with pytest.raises(MigrationError, match=r"CREATEDB.*ALTER ROLE flux_app_it_powerful NOCREATEDB"):
            apply_migrations(shop_dsn, tmp_path, app_role=powerful)
        with psycopg.connect(shop_dsn, autocommit=True) as owner:
            owner.execute("ALTER ROLE flux_app_it_powerful NOCREATEDB")
            owner.execute("CREATE TABLE owned_by_app (id int)")
            owner.execute("ALTER TABLE owned_by_app OWNER TO flux_app_it_powerful")
        with pytest.raises(MigrationError, match="owns owned_by_app"):
            apply_migrations(shop_dsn, tmp_path, app_role=powerful)
    finally:
        with psycopg.connect(shop_dsn, autocommit=True) as owner:
            owner.execute("DROP TABLE IF EXISTS owned_by_app")
            owner.execute("DROP OWNED BY flux_app_it_powerful")
            owner.execute("DROP ROLE IF EXISTS flux_app_it_powerful")


def test_a_membership_in_the_owner_role_is_revoked(shop_dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(shop_dsn, autocommit=True) as owner:
        user = owner.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
        owner.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(user), sql.Identifier(ROLE.name)))
    apply_migrations(shop_dsn, tmp_path, app_role=ROLE)
    with as_role(shop_dsn) as conn:
        assert conn.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", [user]).fetchone() == (False,)


def test_derived_passwords_agree_per_owner_and_role() -> None:
    assert derived_password("owner-pw", "flux_app") == derived_password("owner-pw", "flux_app")
    assert derived_password("owner-pw", "flux_app") != derived_password("other-pw", "flux_app")
    assert derived_password("owner-pw", "flux_app") != derived_password("owner-pw", "flux_app2")
    assert "owner-pw" not in derived_password("owner-pw", "flux_app")


def _engine_call() -> CallContext:
    return CallContext(trace_id="e" * 32, parent_span_id="f" * 16, function="t", sink=MemorySink())


def test_the_engine_as_the_role_maps_a_denied_statement_to_403(shop_dsn: str, tmp_path: Path) -> None:
    """A right the role lacks (here: orders' DELETE, revoked by hand) is a 403 naming operation and table."""
    engine = DataEngine.create(make_conninfo(shop_dsn, user=ROLE.name, password=ROLE.password))
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(engine.open())
        rows = loop.run_until_complete(engine.query({"table": "orders", "operation": "select", "limit": 1},
                                                    _engine_call()))["rows"]
        assert isinstance(rows, list)
        with psycopg.connect(shop_dsn, autocommit=True) as owner:
            owner.execute(sql.SQL("REVOKE DELETE ON orders FROM {}").format(sql.Identifier(ROLE.name)))
        delete = {"table": "orders", "operation": "delete", "filters": [{"column": "id", "op": "eq", "value": -1}]}
        with pytest.raises(PermissionDenied) as denied:
            loop.run_until_complete(engine.query(delete, _engine_call()))
        assert denied.value.status == 403 and denied.value.code == "permission_denied"
        assert denied.value.message.startswith("delete orders: permission denied for table orders")
        with pytest.raises(PermissionDenied, match=r"^batch\[1\]\.delete orders: "):
            loop.run_until_complete(engine.batch([{"table": "orders", "operation": "select", "limit": 1}, delete],
                                                 _engine_call()))
    finally:
        loop.run_until_complete(engine.close())
        loop.close()
        apply_migrations(shop_dsn, tmp_path, app_role=ROLE)   # gives the DELETE right back


def test_a_migrating_user_that_may_not_create_roles_gets_the_fixes_and_nothing_is_half_done(
        pg_server_dsn: str, tmp_path: Path) -> None:
    """A DATABASE_URL whose user owns its database but lacks CREATEROLE: a clear error naming the fixes."""
    with psycopg.connect(pg_server_dsn, autocommit=True) as su:
        su.execute("DROP DATABASE IF EXISTS t_approle_plain WITH (FORCE)")
        su.execute("DROP ROLE IF EXISTS it_owner_plain")
        su.execute("CREATE ROLE it_owner_plain LOGIN PASSWORD 'plain-owner-pw'")
        su.execute("CREATE DATABASE t_approle_plain OWNER it_owner_plain")
    owner_dsn = make_conninfo(pg_server_dsn, user="it_owner_plain", password="plain-owner-pw", dbname="t_approle_plain")
    (tmp_path / "001_t.sql").write_text("CREATE TABLE t (id int);\n")
    try:
        with pytest.raises(MigrationError) as failed:
            apply_migrations(owner_dsn, tmp_path, app_role=AppRole("flux_app_it_plain", "p" * 20))
        message = failed.value.message
        assert "permission denied to create role" in message and "CREATEROLE" in message
        assert '"app_role": false' in message and "p" * 20 not in message
        with psycopg.connect(pg_server_dsn) as su:
            assert su.execute("SELECT 1 FROM pg_roles WHERE rolname = 'flux_app_it_plain'").fetchone() is None
    finally:
        with psycopg.connect(pg_server_dsn, autocommit=True) as su:
            su.execute("DROP DATABASE IF EXISTS t_approle_plain WITH (FORCE)")
            su.execute("DROP ROLE IF EXISTS it_owner_plain")
