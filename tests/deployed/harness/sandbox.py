"""An execution environment's filesystem and identity, as Lambda gives them to a function.

What Lambda documents for a function on a managed runtime, and how we model it here:

* the function's deployment package is extracted read-only at ``/var/task`` and its layers,
  merged in order, read-only at ``/opt``; the runtime at ``/var/lang`` and ``/var/runtime``;
* ``/tmp`` is the only writable place, sized by ``EphemeralStorage`` (512 MB by default);
* the process runs as an unprivileged user (``sbx_user1051``, uid 993) with no ``HOME``;
* memory is a hard limit of ``MemorySize`` MB for everything in the environment.

Each environment is ``unshare --mount --pid --fork --kill-child`` (a private mount and PID
namespace: when the environment is killed, every process it started dies with it, as
when Lambda discards a sandbox), then bind mounts made read-only, a size-limited tmpfs
on ``/tmp``, empty read-only tmpfs over ``/var``'s other contents and over host trees
(``/work``, ``/root``, ``/home``) a Lambda could never see, and ``setpriv`` to uid 993
without capabilities. Memory is a cgroup v1 ``memory.limit_in_bytes`` when the machine
lets us create one (see :func:`memory_cgroup`), else it is not enforced (reported by
:attr:`Sandbox.memory_enforced`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

SANDBOX_UID = 993  # sbx_user1051
SANDBOX_GID = 990
HIDDEN_HOST_TREES = ("/work", "/root", "/home")

_SCRIPT = r'''
set -eu
task="$1"; opt="$2"; lang="$3"; runtime="$4"; tmp_mb="$5"; shift 5
ro_bind() { mount --bind "$1" "$2"; mount -o remount,bind,ro "$2"; }
mount -t tmpfs -o size=1m,mode=755 tmpfs /var
mkdir /var/task /var/lang /var/runtime
ro_bind "$task" /var/task
ro_bind "$lang" /var/lang
ro_bind "$runtime" /var/runtime
mount -o remount,ro /var
if [ -n "$opt" ]; then ro_bind "$opt" /opt; else mount -t tmpfs -o ro,size=1m tmpfs /opt; fi
for hidden in "$@"; do [ -d "$hidden" ] && mount -t tmpfs -o ro,size=1m,mode=755 tmpfs "$hidden"; done
mount -t tmpfs -o "size=${tmp_mb}m,mode=1777" tmpfs /tmp
cd /var/task
exec setpriv --reuid=__UID__ --regid=__GID__ --clear-groups --no-new-privs \
  /var/lang/bin/python3.12 /var/runtime/bootstrap.py
'''.replace("__UID__", str(SANDBOX_UID)).replace("__GID__", str(SANDBOX_GID))


def _own_memory_cgroup() -> Path | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                base = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
                return base if base.is_dir() else None
    except OSError:
        return None
    return None


def memory_cgroup(memory_mb: int) -> Path | None:
    """A fresh cgroup v1 memory group limited to ``memory_mb`` (None where the machine refuses)."""
    base = _own_memory_cgroup()
    if base is None:
        return None
    group = base / f"flux-deployed-{uuid.uuid4().hex[:12]}"
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(memory_mb * 1024 * 1024))
        with contextlib.suppress(OSError):  # no swap accounting on some kernels
            (group / "memory.memsw.limit_in_bytes").write_text(str(memory_mb * 1024 * 1024))
    except OSError:
        with contextlib.suppress(OSError):
            group.rmdir()
        return None
    return group


@dataclass(frozen=True)
class Mounts:
    task: Path          # the function's code asset
    opt: Path | None    # its layers, merged
    lang: Path          # a CPython 3.12 prefix
    runtime: Path       # awslambdaric + boto3 + bootstrap.py
    tmp_mb: int = 512


class Sandbox:
    """One running execution environment process tree."""

    def __init__(self, mounts: Mounts, env: dict[str, str], *, memory_mb: int, log_path: Path) -> None:
        self.cgroup = memory_cgroup(memory_mb)
        self.memory_enforced = self.cgroup is not None
        procs = self.cgroup / "cgroup.procs" if self.cgroup else None
        self._log = log_path.open("ab")

        def join_cgroup() -> None:
            if procs is not None:
                procs.write_text(str(os.getpid()))

        command = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child",
                   "--mount-proc", "/bin/sh", "-c", _SCRIPT, "sandbox", str(mounts.task), str(mounts.opt or ""),
                   str(mounts.lang), str(mounts.runtime), str(mounts.tmp_mb), *HIDDEN_HOST_TREES]
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=join_cgroup)

    def alive(self) -> bool:
        return self.process.poll() is None

    def processes(self) -> list[str]:
        """The command names (``/proc/<pid>/comm``) of every live process of this environment.

        Read from the host's ``/proc`` by walking parent links down from the ``unshare``
        process, outside the environment's PID namespace: nothing the code inside does
        can hide a process from this list (a scenario uses it to prove Deno never ran).
        """
        children: dict[int, list[int]] = {}
        comms: dict[int, str] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                ppid = int(stat[stat.rindex(")") + 2:].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
                comms[int(entry.name)] = (entry / "comm").read_text().strip()
        found, stack = [], [self.process.pid]
        while stack:
            pid = stack.pop()
            if pid in comms:
                found.append(comms[pid])
            stack.extend(children.get(pid, []))
        return found

    def kill(self) -> None:
        """Discard the environment: every process in it dies (PID namespace), then its cgroup goes."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                for pid in (self.cgroup / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            for _ in range(50):
                try:
                    self.cgroup.rmdir()
                    break
                except OSError:
                    import time

                    time.sleep(0.05)
        self._log.close()
