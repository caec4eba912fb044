"""Processes the benchmark starts: their whole tree measured from /proc, and always killed.

A stack's server is started in its own session (so its process group is its own), but
its children may start sessions of their own too (Flux's Deno workers do, so a timeout
can kill a worker's group). Memory and CPU are therefore summed over the *tree* of the
server process (found through the parent pid of every process in /proc), not over its
process group; every process ever seen in the tree is remembered, so that stopping the
stack can kill anything still alive, even when the server itself died first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    ppid: int
    pgid: int
    start_ticks: int
    cpu_ticks: int   # utime + stime
    rss_bytes: int
    name: str


def read_stat(pid: int) -> ProcStat | None:
    """One process's /proc/<pid>/stat, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may contain spaces or parentheses itself.
    name = raw[raw.index("(") + 1: raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2:].split()
    # fields[0] is field 3 (state) of proc(5)
    return ProcStat(pid=pid, ppid=int(fields[1]), pgid=int(fields[2]), start_ticks=int(fields[19]),
                    cpu_ticks=int(fields[11]) + int(fields[12]), rss_bytes=int(fields[21]) * _PAGE, name=name)


def read_pss(pid: int) -> int:
    """Proportional set size in bytes (shared pages divided among their users); 0 if unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def thread_cpu_s(pid: int) -> tuple[float, float]:
    """CPU seconds of ``pid``'s main thread and of all its other threads (utime + stime from /proc).

    Split by thread id, not by name: Python 3.11 does not give its threads kernel names, so every
    thread of the gateway is called "python".
    """
    main = others = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used = (int(fields[11]) + int(fields[12])) / _TICKS
        if int(task.name) == pid:
            main += used
        else:
            others += used
    return main, others


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy since boot (all cores; idle and iowait excluded)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / _TICKS


def all_stats() -> dict[int, ProcStat]:
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_stat(int(entry))
            if stat is not None:
                stats[stat.pid] = stat
    return stats


def tree(stats: dict[int, ProcStat], roots: Iterable[int]) -> list[ProcStat]:
    """The given roots and all their descendants that are in ``stats``."""
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found, todo = [], [r for r in roots if r in stats]
    seen = set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        found.append(stats[pid])
        todo.extend(children.get(pid, ()))
    return found


@dataclass
class TreeSample:
    """What a sampler saw of a process tree: peak memory, CPU used between two marks."""

    peak_rss_bytes: int = 0
    peak_pss_bytes: int = 0
    peak_processes: int = 0
    cpu_ticks: dict[tuple[int, int], int] = field(default_factory=dict)   # (pid, start) → last cpu ticks seen
    names: dict[tuple[int, int], str] = field(default_factory=dict)


class TreeSampler:
    """Polls /proc in a thread; ``mark()``/``since(mark)`` give CPU seconds used by a tree in between."""

    def __init__(self, roots: Sequence[int] | None = None, *, interval_s: float = 0.25, pss_every: int = 4) -> None:
        self.roots = list(roots or [])
        self.interval_s = interval_s
        self.pss_every = pss_every   # PSS walks every mapping: read it on every Nth poll only
        self._polls = 0
        self.sample = TreeSample()
        self.seen: dict[int, int] = {}   # pid → start ticks, everything ever seen in the tree
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> TreeSampler:
        self.poll()
        self._thread = threading.Thread(target=self._run, name="tree-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.poll()

    def reset_peak(self) -> None:
        with self._lock:
            self.sample.peak_rss_bytes = 0
            self.sample.peak_pss_bytes = 0
            self.sample.peak_processes = 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()

    def poll(self) -> list[ProcStat]:
        members = tree(all_stats(), self.roots)
        self._polls += 1
        pss = sum(read_pss(m.pid) for m in members) if self._polls % self.pss_every == 1 else 0
        with self._lock:
            rss = sum(m.rss_bytes for m in members)
            self.sample.peak_rss_bytes = max(self.sample.peak_rss_bytes, rss)
            self.sample.peak_pss_bytes = max(self.sample.peak_pss_bytes, pss)
            self.sample.peak_processes = max(self.sample.peak_processes, len(members))
            for m in members:
                key = (m.pid, m.start_ticks)
                self.seen[m.pid] = m.start_ticks
                self.sample.cpu_ticks[key] = m.cpu_ticks
                self.sample.names[key] = m.name
        return members

    def mark(self) -> dict[tuple[int, int], int]:
        """CPU ticks of every process of the tree now (after a fresh poll)."""
        self.poll()
        with self._lock:
            return dict(self.sample.cpu_ticks)

    def cpu_since(self, mark: dict[tuple[int, int], int]) -> dict[str, float]:
        """CPU seconds per process name used since ``mark`` (processes that exited in between included)."""
        now = self.mark()
        by_name: dict[str, float] = {}
        for key, ticks in now.items():
            used = (ticks - mark.get(key, 0)) / _TICKS
            name = self.sample.names.get(key, "?")
            by_name[name] = by_name.get(name, 0.0) + used
        return by_name


class ManagedProcess:
    """A server process in its own session, its tree sampled, and killed (tree and group) on stop."""

    def __init__(self, argv: Sequence[str], *, cwd: str | Path | None = None, env: dict[str, str] | None = None,
                 log_path: Path | None = None) -> None:
        self.argv = list(argv)
        self.cwd = cwd
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.sampler: TreeSampler | None = None
        self.started_at = 0.0
        self._log = None

    def start(self) -> ManagedProcess:
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.sampler = TreeSampler([self.proc.pid]).start()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, *, grace_s: float = 10.0) -> None:
        """SIGTERM the server (it stops its own children), then SIGKILL whatever of its tree is left."""
        if self.proc is None:
            return
        if self.sampler is not None:
            self.sampler.poll()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        if self.sampler is not None:
            self.sampler.stop()
            kill_remembered(self.sampler.seen)
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()   # type: ignore[union-attr]
        self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def kill_remembered(seen: dict[int, int], *, grace_s: float = 3.0) -> None:
    """Kill (group, then process) everything in ``seen`` still alive with the same start time as recorded."""
    def still_ours(pid: int) -> bool:
        stat = read_stat(pid)
        return stat is not None and stat.start_ticks == seen[pid]

    left = [pid for pid in seen if still_ours(pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [pid for pid in left if still_ours(pid) and not _zombie(pid)]
        if not left:
            return


def _zombie(pid: int) -> bool:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return raw[raw.rindex(")") + 2:].startswith("Z")
