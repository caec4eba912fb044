"""The Deno command line and process settings that make a worker a sandbox (DESIGN §7).

- ``--no-prompt`` and no ``--allow-env`` / ``--allow-write`` / ``--allow-run`` / ``--allow-ffi``:
  those calls throw ``NotCapable`` inside user code.
- Reads only inside the function's own folder.
- Network only to the hosts in ``allow_net``; private, loopback, link-local and
  metadata ranges are always denied with ``--deny-net`` CIDRs, which Deno checks
  against the *resolved* address, so a public name pointing at 127.0.0.1 is refused too.
- A V8 heap limit (``memory_mb``) plus an OS data-segment limit set before exec.
- A scrubbed environment: nothing of the host's (no AWS credentials, no
  ``AWS_LAMBDA_RUNTIME_API``), only what Deno itself needs.
- Its own process group, so a timeout kills the worker and anything it spawned.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
from dataclasses import dataclass
from pathlib import Path

from functions.runtime.errors import WorkerStartFailed
from functions.shared.manifest import FunctionSpec

BOOTSTRAP = Path(__file__).parent / "bootstrap" / "bootstrap.ts"

DENIED_NETWORKS: tuple[str, ...] = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
    "localhost", "[::1]", "[::]",
)
# Deno 2.9 accepts IPv4 CIDRs in --deny-net but not IPv6 ones, so IPv6 unique-local and
# link-local ranges are refused only as literals (flux.json validation), not after DNS.


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


def worker_command(spec: FunctionSpec, *, deno: str, cache_dir: Path, project_root: Path,
                   deno_dir: Path | None = None) -> WorkerCommand:
    """``deno_dir`` is a vendored, read-only Deno cache (Lambda bundles one so nothing downloads at cold start)."""
    config = spec.config
    for path in (spec.directory, project_root, cache_dir):
        if "," in str(path):
            # Deno splits permission lists on commas: such a path would widen --allow-read.
            raise WorkerStartFailed(f"{path}: Flux cannot run functions from a path containing ','; "
                                    "move or rename the project folder")
    argv = [
        deno, "run", "--no-prompt", "--quiet", "--no-check",
        f"--allow-read={spec.directory}",
        f"--v8-flags=--max-old-space-size={config.memory_mb}",
    ]
    if config.allow_net:
        argv.append(f"--allow-net={','.join(config.allow_net)}")
    argv.append(f"--deny-net={','.join(DENIED_NETWORKS)}")
    argv += [str(BOOTSTRAP), spec.entry.resolve().as_uri(), spec.name, str(spec.directory.resolve())]
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(cache_dir),
        "DENO_DIR": str(deno_dir or cache_dir),
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
    return WorkerCommand(argv, env, str(project_root), data_limit)


def limit_data(pid: int, limit_bytes: int) -> None:
    """Cap a started worker's data segment (a backstop under V8's own heap limit)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        resource.prlimit(pid, resource.RLIMIT_DATA, (limit_bytes, limit_bytes))
