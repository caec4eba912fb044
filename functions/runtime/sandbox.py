"""The Deno command line and process settings that make a worker a sandbox (DESIGN §7).

- ``--no-prompt`` and no ``--allow-env`` / ``--allow-write`` / ``--allow-run`` / ``--allow-ffi``:
  those calls throw ``NotCapable`` inside user code.
- Reads only inside the function's own folder (and the project's ``lib/``); links
  whose target lies outside are refused before the worker starts (functions/shared/links.py).
- Imports only local files, vendored packages and the ``allow_net`` hosts: an explicit
  ``--allow-import`` always, because without one Deno 2 applies its default import
  allowlist (esm.sh, deno.land, jsr.io, ...) even when the network is otherwise closed.
- Network only to the hosts in ``allow_net``; every IANA special-purpose range is
  denied (functions/shared/netdeny.py) with ``--deny-net``, which Deno checks
  against the *resolved* address, so a public name pointing at 127.0.0.1 is refused too.
- On Linux, a private user + mount namespace in which the project state (``.flux/``)
  and the other functions' folders are empty read-only tmpfs mounts: a second wall,
  at the OS level, behind Deno's own permission checks (see :func:`isolation`).
- Protocol frames go to a FIFO only the bootstrap holds open (write access to it is
  revoked before user code loads), never to stdout.
- A V8 heap limit (``memory_mb``) plus an OS data-segment limit set before exec.
- A scrubbed environment: nothing of the host's (no AWS credentials, no
  ``AWS_LAMBDA_RUNTIME_API``), only what Deno itself needs.
- Its own process group, so a timeout kills the worker and anything it spawned.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from functions.runtime.errors import WorkerStartFailed
from functions.shared.links import function_read_roots, link_problems
from functions.shared.netdeny import deno_deny_net

if TYPE_CHECKING:
    from functions.shared.manifest import FunctionSpec

BOOTSTRAP = Path(__file__).parent / "bootstrap" / "bootstrap.ts"

DENIED_NETWORKS: tuple[str, ...] = tuple(deno_deny_net())
# With no allow_net host, imports are allowed from this name only: it can never resolve (RFC 6761
# reserves .invalid), and naming any host switches Deno's default import allowlist off.
NO_IMPORT_HOST = "flux-no-remote-imports.invalid:1"

# Runs inside the new namespaces, as root of the user namespace (mapped to the caller's own uid):
# cover the project state and the functions folder with empty tmpfs mounts, bind back only the
# worker's own function folder and Deno cache (through the working directory, which still names
# the real folder once its path is covered), make both covers read-only, then exec Deno.
_MASK_SCRIPT = r"""set -e
state=$1; cache=$2; fdir=$3; fname=$4; shift 4
if [ -n "$state" ]; then
  if [ -n "$cache" ]; then cd "$cache"; fi
  mount -t tmpfs -o mode=0755,size=64k flux-state "$state"
  if [ -n "$cache" ]; then mkdir "$state/${cache##*/}"; mount --no-canonicalize --bind . "$state/${cache##*/}"; fi
  mount -o remount,bind,ro "$state"
fi
cd "$fdir"
mount -t tmpfs -o mode=0755,size=64k flux-functions ..
mkdir "../$fname"
mount --no-canonicalize --bind . "../$fname"
mount -o remount,bind,ro ..
exec "$@"
"""
_UNSHARE = ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"]


@functools.cache
def isolation() -> str:
    """``"namespace"`` when workers can run in a private mount namespace here, else ``"none"``.

    Linux with unprivileged user namespaces (or root) has them; Lambda and macOS do not, and
    ``FLUX_SANDBOX_NAMESPACE=0`` turns them off. Without them, the link checks and Deno's
    permissions are the only walls, and ``flux dev`` says so when it starts.
    """
    if os.environ.get("FLUX_SANDBOX_NAMESPACE", "1") == "0" or shutil.which("unshare") is None:
        return "none"
    try:
        probe = subprocess.run([*_UNSHARE, "sh", "-c", "mount -t tmpfs flux-probe /mnt 2>/dev/null || "
                                "mount -t tmpfs flux-probe /tmp"], capture_output=True, timeout=10,
                               env={"PATH": "/usr/bin:/bin"})
    except (OSError, subprocess.TimeoutExpired):
        return "none"
    return "namespace" if probe.returncode == 0 else "none"


def deno_executable() -> str:
    """The deno binary from the `deno` PyPI package (or $FLUX_DENO, or a layer's /opt/bin/deno)."""
    explicit = os.environ.get("FLUX_DENO")
    if explicit:
        return explicit
    try:
        from deno import find_deno_bin  # type: ignore[import-not-found]

        return str(find_deno_bin())
    except ImportError:
        pass
    for candidate in ("/opt/bin/deno", shutil.which("deno")):
        if candidate and Path(candidate).exists():
            return candidate
    raise FileNotFoundError("deno not found: install the `deno` package (make setup) or set FLUX_DENO")


@dataclass(frozen=True, slots=True)
class WorkerCommand:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    data_limit_bytes: int
    # The FIFO the bootstrap writes its frames to (created by the worker before it spawns).
    channel: Path | None = None


def check_links(spec: FunctionSpec, project_root: Path) -> None:
    """Refuse to start a worker whose folder holds a link out of what it may read."""
    problems = link_problems(spec.directory, function_read_roots(spec.directory, project_root),
                             shown_from=project_root)
    if problems:
        raise WorkerStartFailed(f"{spec.name} cannot run: " + "; ".join(problems))


def worker_command(spec: FunctionSpec, *, deno: str, cache_dir: Path, project_root: Path,
                   channel: Path | None = None, namespace: bool | None = None) -> WorkerCommand:
    """``cache_dir`` is the worker's ``DENO_DIR`` (writable; see :func:`link_vendored_cache` for a bundled one).

    ``channel``: the FIFO for protocol frames; ``namespace``: run inside the private mount namespace
    (default: when :func:`isolation` says this machine has one).
    """
    config = spec.config
    directory = Path(os.path.realpath(spec.directory))
    reads = function_read_roots(directory, Path(os.path.realpath(project_root)))
    for path in (*reads, project_root, cache_dir, *([channel] if channel else [])):
        if "," in str(path):
            # Deno splits permission lists on commas: such a path would widen --allow-read.
            raise WorkerStartFailed(f"{path}: Flux cannot run functions from a path containing ','; "
                                    "move or rename the project folder")
    check_links(spec, project_root)
    argv = [
        deno, "run", "--no-prompt", "--quiet", "--no-check",
        f"--allow-read={','.join(str(r) for r in reads)}",
        f"--v8-flags=--max-old-space-size={config.memory_mb}",
    ]
    if channel is not None:
        argv.append(f"--allow-write={channel}")
    if config.allow_net:
        argv.append(f"--allow-net={','.join(config.allow_net)}")
    argv.append(f"--allow-import={','.join(config.allow_net) if config.allow_net else NO_IMPORT_HOST}")
    argv.append(f"--deny-net={','.join(DENIED_NETWORKS)}")
    argv += [str(BOOTSTRAP), spec.entry.resolve().as_uri(), spec.name, str(directory), str(channel or "")]
    if namespace if namespace is not None else isolation() == "namespace":
        argv = _in_namespace(argv, directory, project_root, cache_dir)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(cache_dir),
        "DENO_DIR": str(cache_dir),
        "DENO_NO_UPDATE_CHECK": "1",
        "DENO_NO_PROMPT": "1",
        "NO_COLOR": "1",
        "TZ": "UTC",
        "LANG": "C.UTF-8",
    }
    # V8 needs several hundred MiB of data segment for its reservations before any user allocation
    # (it fails to start under 512 MiB), so the OS limit leaves that headroom over the heap and is a
    # backstop against native allocations; the heap flag above is the tight bound on user data.
    data_limit = (config.memory_mb * 2 + 768) * 1024 * 1024
    return WorkerCommand(argv, env, str(project_root), data_limit, channel)


def link_vendored_cache(vendored: Path, cache_dir: Path) -> None:
    """Make ``cache_dir`` a writable ``DENO_DIR`` that reads the vendored imports of ``vendored`` through links.

    A Lambda bundle vendors the project's imports (``remote/``, ``npm/``) under the read-only
    ``/var/task``. Pointed at it directly, Deno cannot write its transpile cache (``gen/``)
    and retries each module's write with sleeps of 10+20+30+40+50 ms: 150 ms of idle wall time
    per TypeScript file of a cold start (the bootstrap alone: 200 ms instead of 60 ms). Linking
    the vendored entries into the writable state directory keeps every import offline and
    lets the caches go to ``/tmp``. User code never gets write permission to either place.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    for entry in vendored.iterdir():
        link = cache_dir / entry.name
        if not link.is_symlink() and not link.exists():
            link.symlink_to(entry.resolve(), target_is_directory=entry.is_dir())


def _in_namespace(argv: list[str], directory: Path, project_root: Path, cache_dir: Path) -> list[str]:
    """Wrap a Deno command so that it runs where ``.flux/`` and the other functions are empty."""
    state = Path(os.path.realpath(project_root)) / ".flux"
    cache = Path(os.path.realpath(cache_dir))
    state_arg = str(state) if state.is_dir() else ""
    cache_arg = str(cache) if state_arg and cache.parent == state else ""
    return [*_UNSHARE, "sh", "-c", _MASK_SCRIPT, "flux-sandbox", state_arg, cache_arg, str(directory),
            directory.name, *argv]


def limit_data(pid: int, limit_bytes: int) -> None:
    """Cap a started worker's data segment (a backstop under V8's own heap limit)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        resource.prlimit(pid, resource.RLIMIT_DATA, (limit_bytes, limit_bytes))
