"""The embedded server on a fresh machine: no server user, private clones, concurrent starts, passwords, errors.

Each test reproduces a first-run failure of the former design (a system user created with a
racy ``useradd``, parents chmod-ed open, ``--auth=trust`` open to every local user, no retry
on a taken port, a stale ``postmaster.pid`` taken for a running server).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from functions.engine import pg_cluster, runas_userns
from functions.engine.embedded_pg import EmbeddedPostgres, binaries_dir
from functions.engine.errors import EmbeddedPostgresError

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
ROOT = os.geteuid() == 0
PYTHONPATH = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A directory only its owner may enter, like a clone under root's home (mkdtemp makes it 0700)."""
    path = Path(tempfile.mkdtemp(prefix="flux-private-"))
    assert path.stat().st_mode & 0o777 == 0o700
    yield path
    for pidfile in path.rglob("postmaster.pid"):     # never leave a server behind, whatever failed
        EmbeddedPostgres(pidfile.parent).stop()
    shutil.rmtree(path, ignore_errors=True)


def _pg(argv: list[str]) -> None:
    """Run a Postgres program the way the server runs (through the user namespace when we are root)."""
    subprocess.run(runas_userns.command(argv) if ROOT else argv, check=True, capture_output=True, timeout=60,
                   cwd="/")


# -- no server user, concurrent starts -------------------------------------------------------------------

CHILD = r"""
import json, pwd, sys
from pathlib import Path

data, go, stop, contested, lookups = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), \
    Path(sys.argv[5])

def no_passwd_lookups(name):          # a fresh machine has no server user: any lookup is recorded and fails
    with open(lookups, "a") as handle:
        handle.write(name + "\n")
    raise KeyError(name)

pwd.getpwnam = no_passwd_lookups
from functions.engine import embedded_pg

real_free_port = embedded_pg._free_port
calls = []

def contested_first(host):            # every process first tries the same port, as racing bind(0) callers can
    calls.append(host)
    return contested if len(calls) == 1 else real_free_port(host)

embedded_pg._free_port = contested_first
import psycopg, os, time
while not go.exists():
    time.sleep(0.005)
server = embedded_pg.EmbeddedPostgres(data, durable=False)
try:
    dsn = server.start()
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT 1")
    info = server.info()
    print(json.dumps({"port": info.port, "owner": os.stat(f"/proc/{info.pid}").st_uid, "tries": len(calls)}),
          flush=True)
    while not stop.exists():
        time.sleep(0.01)
finally:
    server.stop()
"""


def test_several_processes_start_servers_at_once_with_no_server_user(private_dir: Path) -> None:
    fake_bin = private_dir / "bin"
    fake_bin.mkdir()
    useradd_marker = private_dir / "useradd-ran"
    for tool in ("useradd", "adduser"):
        (fake_bin / tool).write_text(f"#!/bin/sh\necho \"$0 $@\" >> {useradd_marker}\nexit 1\n")
        (fake_bin / tool).chmod(0o755)
    go, stop, lookups = private_dir / "go", private_dir / "stop", private_dir / "passwd-lookups"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        contested = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "PATH": f"{fake_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(private_dir / f"p{i}" / ".flux" / "pg"), str(go),
                                  str(stop), str(contested), str(lookups)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
                for i in range(3)]
    try:
        time.sleep(0.5)     # all three imported and waiting
        go.touch()
        results = []
        for child in children:
            line = child.stdout.readline() if child.stdout else ""
            if not line:
                child.wait(timeout=30)
                pytest.fail(f"a concurrent start failed: {child.stderr.read() if child.stderr else ''}")
            results.append(json.loads(line))
    finally:
        stop.touch()
        for child in children:
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
    assert all(child.returncode == 0 for child in children), [c.stderr.read() for c in children if c.stderr]
    assert len({r["port"] for r in results}) == 3
    assert sum(r["port"] == contested for r in results) <= 1
    lost = [r for r in results if r["port"] != contested]
    assert len(lost) >= 2 and all(r["tries"] >= 2 for r in lost)    # they lost the race and retried
    assert {r["owner"] for r in results} == {os.geteuid()}     # the caller's own process: no server user
    assert not useradd_marker.exists(), useradd_marker.read_text()
    assert not lookups.exists(), lookups.read_text()


# -- a clone under a 0700 directory ----------------------------------------------------------------------------

def _modes(paths: list[Path]) -> dict[Path, int]:
    return {p: p.stat().st_mode for p in paths}


def test_a_project_under_a_0700_directory_starts_and_no_directory_is_opened_up(private_dir: Path) -> None:
    project = private_dir / "clone" / "my-app"
    project.mkdir(parents=True)
    install = binaries_dir().parent
    watched = [private_dir, private_dir / "clone", project, *install.parents, install, install / "bin",
               install / "bin" / "postgres", install / "lib"]
    before = _modes(watched)
    server = EmbeddedPostgres(project / ".flux" / "pg", durable=False)
    try:
        with psycopg.connect(server.start()) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    finally:
        server.stop()
    assert _modes(watched) == before
    assert private_dir.stat().st_mode & 0o777 == 0o700
    assert (project / ".flux" / "pg").stat().st_uid == os.geteuid()


# -- authentication ---------------------------------------------------------------------------------------------

PROBE = r"""
import json, socket, struct, sys
kind, target, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    if kind == "tcp":
        conn = socket.create_connection((target, port), timeout=5)
    else:
        conn = socket.socket(socket.AF_UNIX)
        conn.settimeout(5)
        conn.connect(f"{target}/.s.PGSQL.{port}")
except OSError as exc:
    print(json.dumps({"outcome": "unreachable", "detail": exc.strerror}))
    sys.exit()
params = b"user\0postgres\0database\0postgres\0\0"
conn.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
tag = conn.recv(1)
length = struct.unpack("!i", conn.recv(4))[0]
body = conn.recv(length - 4)
if tag == b"R":
    code = struct.unpack("!i", body[:4])[0]
    print(json.dumps({"outcome": "accepted" if code == 0 else "password_required", "code": code}))
else:
    print(json.dumps({"outcome": "error", "detail": body.decode(errors="replace")}))
"""


def _as_nobody(kind: str, target: str, port: int, python: str) -> dict[str, object]:
    """A client of uid 65534 with no password: a startup packet, and what the server answers."""
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-I", "-c",
                             PROBE, kind, target, str(port)], capture_output=True, text=True, timeout=30, cwd="/")
    assert result.returncode == 0, result.stderr
    outcome: dict[str, object] = json.loads(result.stdout)
    return outcome


def _python_for_nobody() -> str | None:
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"):
        if os.path.exists(candidate) and subprocess.run(
                ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", candidate, "-c", "pass"],
                capture_output=True, timeout=30, cwd="/").returncode == 0:
            return candidate
    return None


def test_only_the_password_holder_connects(private_dir: Path) -> None:
    server = EmbeddedPostgres(private_dir / "app" / ".flux" / "pg", durable=False)
    try:
        dsn = server.start()
        info = server.info()
        assert info is not None
        password_file = private_dir / "app" / ".flux" / "pg.password"
        assert password_file.stat().st_mode & 0o777 == 0o600
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        # Without the password even the owner is refused, over TCP and over the unix socket
        for target in (f"host=127.0.0.1 port={info.port}", f"host={info.socket_dir} port={info.port}"):
            with pytest.raises(psycopg.OperationalError, match="no password supplied"):
                psycopg.connect(f"{target} user=postgres dbname=postgres connect_timeout=5").close()
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(f"host=127.0.0.1 port={info.port} user=postgres password=guess dbname=postgres").close()

        if not ROOT or shutil.which("setpriv") is None:
            pytest.skip("another OS user is simulated with setpriv, which needs root")
        python = _python_for_nobody()
        if python is None:
            pytest.skip("no Python interpreter that uid 65534 may run")
        over_tcp = _as_nobody("tcp", "127.0.0.1", info.port, python)
        assert over_tcp["outcome"] == "password_required", over_tcp      # SASL (scram-sha-256), not AuthenticationOk
        over_socket = _as_nobody("unix", info.socket_dir, info.port, python)
        assert over_socket["outcome"] in ("unreachable", "password_required"), over_socket
    finally:
        server.stop()


def _trust_cluster(data: Path) -> None:
    """A cluster as an earlier Flux made it: --auth=trust, no password, one table of data."""
    data.mkdir(parents=True, mode=0o700)
    bin_dir = binaries_dir()
    _pg([str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "--no-sync",
         "--no-instructions", "--no-locale", "--encoding=UTF8"])


def _start_trusting(data: Path) -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _pg([str(binaries_dir() / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w",
         "-o", f"-h 127.0.0.1 -p {port} -k {data}", "start"])
    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kept (v int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    return port


@pytest.mark.parametrize("running", [False, True], ids=["stopped", "still-running"])
def test_a_trust_cluster_from_an_earlier_run_is_secured_and_keeps_its_data(private_dir: Path, running: bool) -> None:
    data = private_dir / "app" / ".flux" / "pg"
    _trust_cluster(data)
    _start_trusting(data)
    if not running:
        _pg([str(binaries_dir() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
    server = EmbeddedPostgres(data, durable=False)
    try:
        dsn = server.start()
        assert server.started_here is not running
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT v FROM kept").fetchone() == (42,)
        info = server.info()
        assert info is not None
        with pytest.raises(psycopg.OperationalError, match="no password supplied"):
            psycopg.connect(pg_cluster.build_dsn(info, None, "postgres"), connect_timeout=5).close()
        assert (data / "pg_hba.conf").read_text() == pg_cluster.HBA_CONF
    finally:
        EmbeddedPostgres(data).stop()


# -- failures Flux cannot repair, and stale state it can ----------------------------------------------------------

def test_a_configured_port_in_use_is_a_clear_error(private_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = EmbeddedPostgres(private_dir / "pg", port=port, durable=False)
        with pytest.raises(EmbeddedPostgresError) as caught:
            server.start()
    assert f"port {port} on 127.0.0.1 is already in use" in caught.value.message
    assert "Fix:" in caught.value.message and not server.is_running()


def test_a_data_directory_of_a_newer_postgres_is_a_clear_error(private_dir: Path) -> None:
    data = private_dir / "pg"
    data.mkdir(mode=0o700)
    (data / "PG_VERSION").write_text("99\n")
    with pytest.raises(EmbeddedPostgresError, match=r"created by PostgreSQL 99, newer than the PostgreSQL \d+"):
        EmbeddedPostgres(data, durable=False).start()
    assert (data / "PG_VERSION").read_text() == "99\n" and not (data / "base").exists()   # left untouched


def test_a_stale_or_corrupt_postmaster_pid_is_not_taken_for_a_server(private_dir: Path) -> None:
    data = private_dir / "pg"
    server = EmbeddedPostgres(data, durable=False)
    server.start()
    info = server.info()
    assert info is not None
    server.stop()
    # After a crash or a reboot: the file names a pid that is now some other, live process (this one)
    (data / "postmaster.pid").write_text(f"{os.getpid()}\n{data}\n1700000000\n{info.port}\n{data}\n127.0.0.1\n"
                                         f"  1 2\nready   \n")
    assert not server.is_running()
    for content in (None, "\x00\x00 garbage"):
        if content is not None:
            (data / "postmaster.pid").write_text(content)
        try:
            with psycopg.connect(server.start(), connect_timeout=5) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            assert server.started_here
        finally:
            server.stop()


@pytest.mark.skipif(not ROOT, reason="the user namespace is only used by root")
def test_root_without_user_namespaces_gets_the_cause_and_the_fix(private_dir: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    refuse = ("import sys; sys.stderr.write('flux-userns: unshare(CLONE_NEWUSER) failed: EPERM "
              "(Operation not permitted)\\n'); sys.exit(111)")
    monkeypatch.setattr(runas_userns, "command", lambda argv: [sys.executable, "-c", refuse])
    with pytest.raises(EmbeddedPostgresError) as caught:
        EmbeddedPostgres(private_dir / "pg", durable=False).start()
    message = caught.value.message
    assert "Postgres refuses to run as root" in message and "EPERM" in message and "non-root user" in message
    assert not (private_dir / "pg" / "PG_VERSION").exists()


def test_the_password_is_never_printed_by_flux_db(private_dir: Path) -> None:
    project = private_dir / "app"
    (project / "schema").mkdir(parents=True)
    (project / "flux.json").write_text(json.dumps({"name": "app"}))
    (project / "schema" / "001_t.sql").write_text("CREATE TABLE t (id int primary key);\n")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"PYTHONPATH": PYTHONPATH}
    result = subprocess.run([sys.executable, "-m", "cli.main", "db", "migrate", "-C", str(project)],
                            capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "applied 001_t.sql" in result.stdout
    password = (project / ".flux" / "pg.password").read_text().strip()
    assert password not in result.stdout + result.stderr
    assert not EmbeddedPostgres(project / ".flux" / "pg").is_running()    # started for the command, stopped after


DISK_FULL = r"""
import sys
from functions.engine.embedded_pg import EmbeddedPostgres
from functions.engine.errors import EmbeddedPostgresError
try:
    EmbeddedPostgres(sys.argv[1], durable=False).start()
except EmbeddedPostgresError as exc:
    print(exc.message)
else:
    print("started")
"""


@pytest.mark.skipif(not ROOT or shutil.which("unshare") is None, reason="mounts a tiny tmpfs, which needs root")
def test_a_full_disk_is_a_clear_error(private_dir: Path) -> None:
    """initdb on a 3 MB tmpfs, mounted in a private mount namespace of a child (nothing changes outside it)."""
    mount = private_dir / "small"
    mount.mkdir()
    script = (f"mount -t tmpfs -o size=3m flux-test {mount} && exec {sys.executable} -c '{DISK_FULL}' "
              f"{mount}/pg")
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                            capture_output=True, text=True, timeout=120, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": PYTHONPATH})
    if result.returncode != 0 and "mount" in result.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    assert f"the disk holding {mount}/pg is full (No space left on device)" in result.stdout
    assert "Fix: free some space" in result.stdout
    assert not any(mount.iterdir())     # the tmpfs was only ever visible to the child
