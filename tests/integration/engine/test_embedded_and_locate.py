"""The embedded server (start, reuse, stop) and how a project finds its database."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg
import pytest

from functions.engine.embedded_pg import EmbeddedPostgres
from functions.engine.locate import locate_database
from functions.shared.manifest import ManifestError

pytestmark = pytest.mark.integration


def test_start_reuse_and_stop_under_the_project(pg_home: Path) -> None:
    project = pg_home / "my-app"
    project.mkdir()
    location = locate_database(project, env={}, durable=False)
    try:
        assert location.source == "embedded" and location.started_here
        password = (project / ".flux" / "pg.password").read_text().strip()
        assert location.dsn.startswith(f"postgresql://postgres:{password}@127.0.0.1:") and len(password) >= 32
        assert password not in repr(location) and password not in location.display_dsn
        assert (project / ".flux" / "pg" / "PG_VERSION").exists()
        info = location.server.info()  # type: ignore[union-attr]
        assert info is not None and Path(info.socket_dir) == project.resolve() / ".flux" / "pg"
        assert (Path(info.socket_dir) / f".s.PGSQL.{info.port}").exists()
        # As root too the server is the caller's own process (as 65534 inside a user namespace), no system user
        assert os.stat(f"/proc/{info.pid}").st_uid == os.geteuid()
        with psycopg.connect(location.dsn) as conn:
            conn.execute("CREATE TABLE kept (v int)")
            conn.execute("INSERT INTO kept VALUES (42)")
            conn.commit()

        # A second user of the project (say `flux db schema` beside `flux dev`) reuses the running server
        second = locate_database(project, env={})
        assert second.dsn == location.dsn and not second.started_here
        second.stop()   # did not start it: leaves it running
        assert location.server.is_running()  # type: ignore[union-attr]
    finally:
        location.stop()
    assert not location.server.is_running()  # type: ignore[union-attr]

    # Restart: no initdb again, the data is still there, and it is quick
    again = EmbeddedPostgres(project / ".flux" / "pg", durable=False)
    try:
        with psycopg.connect(again.start()) as conn:
            assert conn.execute("SELECT v FROM kept").fetchone() == (42,)
        assert again.last_start_ms < 5000
    finally:
        again.stop()


def test_a_too_long_data_directory_puts_the_socket_elsewhere(pg_home: Path) -> None:
    deep = pg_home / ("d" * 60) / ("e" * 40) / "pg"
    server = EmbeddedPostgres(deep, durable=False)
    try:
        dsn = server.start()
        info = server.info()
        assert info is not None and info.socket_dir != str(deep) and len(info.socket_dir) < 100
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()


def test_database_url_wins_then_flux_json(tmp_path: Path) -> None:
    assert locate_database(tmp_path, env={"DATABASE_URL": "postgresql://u@db/x"}).source == "env"
    (tmp_path / "flux.json").write_text(json.dumps({"name": "app", "database": {"url": "postgresql://u@cfg/y"}}))
    found = locate_database(tmp_path, env={})
    assert (found.source, found.dsn, found.server) == ("flux.json", "postgresql://u@cfg/y", None)
    assert not (tmp_path / ".flux" / "pg").exists()    # no embedded server was made
    # ctx.db goes to the same server as the application role; a URL without a password gets a generated one
    assert found.app_role is not None and found.app_role.name == "flux_app"
    app_password = tmp_path / ".flux" / "pg.app.password"
    assert app_password.read_text().strip() == found.app_role.password and app_password.stat().st_mode & 0o077 == 0
    assert "user=flux_app" in found.app_dsn and "host=cfg" in found.app_dsn
    assert found.app_role.password not in repr(found)
    # a URL with the owner's password: the role's password is derived from it (same for every checkout)
    owned = locate_database(tmp_path, env={"DATABASE_URL": "postgresql://u:owner-pw@db/x"})
    again = locate_database(tmp_path / "..", env={"DATABASE_URL": "postgresql://u:owner-pw@db/z"})
    assert owned.app_role is not None and again.app_role is not None
    assert owned.app_role.password == again.app_role.password != "owner-pw"
    (tmp_path / "flux.json").write_text(json.dumps({"name": "app", "database": {"url": "postgresql://u@cfg/y",
                                                                                "app_role": False}}))
    opted_out = locate_database(tmp_path, env={})
    assert opted_out.app_role is None and opted_out.app_dsn == opted_out.dsn


def test_a_broken_flux_json_is_reported_not_ignored(tmp_path: Path) -> None:
    (tmp_path / "flux.json").write_text(json.dumps({"name": "app", "database": {"uri": "x"}}))
    with pytest.raises(ManifestError, match=r"database\.uri"):
        locate_database(tmp_path, env={})
