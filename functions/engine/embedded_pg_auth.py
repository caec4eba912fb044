"""The embedded cluster's password and ``pg_hba.conf``: the files that decide who may connect.

The password lives next to the data directory (``.flux/pg.password``), created with mode 0600
from its first byte, because the DSN every Flux component uses is built from it; ``pg_hba.conf``
is Flux's own (:data:`~functions.engine.pg_cluster.HBA_CONF`). A server an earlier Flux started
with ``trust`` and left running is secured here over its own, still trusting, connection: the
password is set from a SCRAM verifier, ``pg_hba.conf`` rewritten and the server reloaded, and
only once a password-less connection is refused is the server handed out.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import psycopg
from psycopg import sql

from functions.engine import pg_cluster
from functions.engine.errors import EmbeddedPostgresError
from functions.engine.pg_cluster import DB_USER, HBA_CONF, ServerInfo


def ensure_password_file(path: Path) -> tuple[str, bool]:
    """The password kept in ``path``, generated (mode 0600 from its first byte) when there is none.

    Also the application role's password (``.flux/pg.app.password``): the migrator sets it on the
    role, the engine that serves ``ctx.db`` logs in with it. Returns (password, created).
    """
    if path.exists():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        password = path.read_text().strip()
        if password:
            return password, False
    password = secrets.token_urlsafe(24)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)    # exactly 0600 whatever the umask
        os.write(fd, f"{password}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    return password, True


class ClusterAuth:
    """The auth files of the cluster in ``data_dir``; the password is in ``<data_dir>.password``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.password_file = data_dir.parent / f"{data_dir.name}.password"

    def ensure_password(self) -> tuple[str, bool]:
        """The cluster's password, generating it (mode 0600 from the first byte) when there is none."""
        return ensure_password_file(self.password_file)

    def read_password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except FileNotFoundError:
            raise EmbeddedPostgresError(
                f"the password of the embedded Postgres on {self.data_dir} is missing ({self.password_file}). "
                f"Fix: stop the server (kill -INT the pid in {self.data_dir}/postmaster.pid) and start again; "
                f"Flux then sets a new password.") from None

    def hba_current(self) -> bool:
        try:
            return (self.data_dir / "pg_hba.conf").read_text() == HBA_CONF
        except FileNotFoundError:
            return False

    def write_hba(self) -> None:
        """Flux's ``pg_hba.conf``, owned like the data directory (a running legacy server must read it)."""
        path = self.data_dir / "pg_hba.conf"
        temp = path.with_name(".pg_hba.conf.tmp")
        temp.write_text(HBA_CONF)
        temp.chmod(0o600)
        owner = self.data_dir.stat()
        if (owner.st_uid, owner.st_gid) != (os.geteuid(), os.getegid()):
            os.chown(temp, owner.st_uid, owner.st_gid)
        os.replace(temp, path)

    def secure_running(self, info: ServerInfo, database: str) -> str:
        """A server already running: ours as is, or one an earlier Flux started with trust, secured live."""
        if self.password_file.exists() and self.hba_current():
            return self.read_password()
        password, _ = self.ensure_password()
        verifier = pg_cluster.scram_verifier(password, secrets.token_bytes(16))
        try:
            with psycopg.connect(pg_cluster.build_dsn(info, None, database), autocommit=True,
                                 connect_timeout=5) as conn:
                conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(DB_USER),
                                                                          sql.Literal(verifier)))
                self.write_hba()
                conn.execute("SELECT pg_reload_conf()")
        except psycopg.OperationalError:
            raise EmbeddedPostgresError(
                f"a Postgres server (pid {info.pid}) is running on {self.data_dir} with a password Flux does not "
                f"have. Fix: stop it (kill -INT {info.pid}) and start again; Flux then sets a new password.") \
                from None
        self._await_reload(info, database)
        return password

    def _await_reload(self, info: ServerInfo, database: str) -> None:
        """The reload is asynchronous (SIGHUP): wait until a connection without the password is refused."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                psycopg.connect(pg_cluster.build_dsn(info, None, database), connect_timeout=2).close()
            except psycopg.OperationalError:
                return
            time.sleep(0.05)
        raise EmbeddedPostgresError(
            f"the Postgres server (pid {info.pid}) on {self.data_dir} still accepts connections without a password "
            f"after its pg_hba.conf was rewritten (see {self.data_dir}/server.log). Fix: stop it "
            f"(kill -INT {info.pid}) and start again.")
