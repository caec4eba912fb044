"""Migrations on a real server: order, bookkeeping, idempotence, edited files, failures, no-transaction files."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from functions.engine.errors import MigrationError
from functions.engine.migrations import apply_migrations, migration_status

pytestmark = pytest.mark.integration


def tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


def test_files_apply_in_filename_order_once(pg_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "010_items.sql").write_text("CREATE TABLE items (id serial PRIMARY KEY, box_id int REFERENCES boxes);")
    (tmp_path / "002_boxes.sql").write_text("CREATE TABLE boxes (id serial PRIMARY KEY);\n"
                                            "INSERT INTO boxes DEFAULT VALUES; -- 100% seed, '%s' is no placeholder")
    (tmp_path / "notes.txt").write_text("not a migration")
    report = apply_migrations(pg_dsn, tmp_path)
    assert report.applied == ["002_boxes.sql", "010_items.sql"] and report.already_applied == []
    assert {"boxes", "items", "flux_migrations"} <= tables(pg_dsn)
    again = apply_migrations(pg_dsn, tmp_path)
    assert again.applied == [] and again.already_applied == ["002_boxes.sql", "010_items.sql"]
    with psycopg.connect(pg_dsn) as conn:
        recorded = conn.execute("SELECT filename, length(checksum) FROM flux_migrations ORDER BY 1").fetchall()
    assert recorded == [("002_boxes.sql", 64), ("010_items.sql", 64)]


def test_an_edited_applied_file_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "100_shelves.sql").write_text("CREATE TABLE shelves (id serial PRIMARY KEY);")
    apply_migrations(pg_dsn, tmp_path)
    (tmp_path / "100_shelves.sql").write_text("CREATE TABLE shelves (id bigserial PRIMARY KEY);")
    (tmp_path / "101_next.sql").write_text("CREATE TABLE next_one (id int);")
    with pytest.raises(MigrationError, match=r"100_shelves\.sql changed after it was applied"):
        apply_migrations(pg_dsn, tmp_path)
    assert "next_one" not in tables(pg_dsn)
    states = {s["filename"]: s["state"] for s in migration_status(pg_dsn, tmp_path)}
    assert states["100_shelves.sql"] == "changed" and states["101_next.sql"] == "pending"


def test_a_failing_file_is_rolled_back_and_named_with_its_line(pg_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "001_ok.sql").write_text("CREATE TABLE fine (id int);")
    (tmp_path / "002_bad.sql").write_text("CREATE TABLE half (id int);\n\nCREATE TABLE broken (id nosuchtype);")
    (tmp_path / "003_later.sql").write_text("CREATE TABLE later (id int);")
    with pytest.raises(MigrationError, match=r"002_bad.sql line 3: .*type \"nosuchtype\" does not exist"):
        apply_migrations(pg_dsn, tmp_path)
    present = tables(pg_dsn)
    assert "fine" in present and "half" not in present and "later" not in present
    states = {s["filename"]: s["state"] for s in migration_status(pg_dsn, tmp_path)}
    assert states["001_ok.sql"] == "applied" and states["002_bad.sql"] == "pending"


def test_no_transaction_files_can_create_indexes_concurrently(pg_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "001_t.sql").write_text("CREATE TABLE conc (id int, v text);")
    (tmp_path / "002_ix.sql").write_text("-- flux:no-transaction\nCREATE INDEX CONCURRENTLY conc_v_idx ON conc (v);")
    assert apply_migrations(pg_dsn, tmp_path).applied == ["001_t.sql", "002_ix.sql"]
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT 1 FROM pg_indexes WHERE indexname = 'conc_v_idx'").fetchone() == (1,)


def test_a_no_transaction_file_runs_statement_by_statement(pg_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "201_multi.sql").write_text("CREATE TABLE multi (id int, a text, b text);")
    (tmp_path / "202_multi_ix.sql").write_text(
        "-- flux:no-transaction\n"
        "CREATE INDEX CONCURRENTLY multi_a_idx ON multi (a); -- one; two\n"
        "/* a comment; with /* nested; */ semicolons */\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS multi_b_idx ON multi (b);\n"
        "COMMENT ON TABLE multi IS 'it''s; quoted';\n"
        "DO $body$ BEGIN PERFORM 1; PERFORM 2; END $body$;\n")
    assert apply_migrations(pg_dsn, tmp_path).applied == ["201_multi.sql", "202_multi_ix.sql"]
    with psycopg.connect(pg_dsn) as conn:
        names = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'multi'")}
        assert names == {"multi_a_idx", "multi_b_idx"}
        assert conn.execute("SELECT obj_description('multi'::regclass)").fetchone() == ("it's; quoted",)


def test_a_failing_no_transaction_statement_is_named_with_its_line(pg_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "301_multi2.sql").write_text("CREATE TABLE multi2 (id int);")
    (tmp_path / "302_multi2_ix.sql").write_text("-- flux:no-transaction\nCREATE INDEX CONCURRENTLY m2_idx ON multi2 (id);\n"
                                         "\nCREATE INDEX CONCURRENTLY m2_bad ON multi2 (nosuchcolumn);\n")
    with pytest.raises(MigrationError, match=r"302_multi2_ix.sql line 4 \(statement 2 of 2.*nosuchcolumn"):
        apply_migrations(pg_dsn, tmp_path)
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT 1 FROM pg_indexes WHERE indexname = 'm2_idx'").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM flux_migrations WHERE filename = '302_multi2_ix.sql'").fetchone() == (0,)


def test_a_missing_schema_directory_applies_nothing(pg_dsn: str, tmp_path: Path) -> None:
    report = apply_migrations(pg_dsn, tmp_path / "nope")
    assert report.applied == [] and report.already_applied == []
