"""What the benchmark needs beyond ``make setup``, created on first use.

- ``wrk`` from Debian (``apt-get install -y wrk``; we run as root on these machines);
- ``bench/.venv-bench``: a virtualenv with the baselines and py-spy, pinned in
  bench/requirements-bench.txt (kept apart from .venv so Chalice's and FastAPI's
  dependencies never touch Flux's lock), reinstalled when that file changes;
- the raw Deno server's npm Postgres driver, cached in ``bench/.venv-bench/deno`` ahead of
  time so the download is not counted in that server's start-up.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.stacks import APPS, REPO, Tools

BENCH_VENV = REPO / "bench" / ".venv-bench"
REQUIREMENTS = REPO / "bench" / "requirements-bench.txt"


def ensure_wrk(say=print) -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError("wrk is missing: install it (Debian: apt-get install -y wrk) and run again")
    say("installing wrk from Debian (apt-get install -y wrk)")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.STDOUT}
    if subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, **quiet).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True, **quiet)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, **quiet)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("apt-get install wrk did not put wrk on PATH")
    return found


def ensure_bench_venv(say=print) -> Path:
    """The bench venv's python, (re)installed when requirements-bench.txt changed."""
    python = BENCH_VENV / "bin" / "python"
    stamp = BENCH_VENV / ".installed"
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return python
    say(f"creating {BENCH_VENV.relative_to(REPO)} (pinned in {REQUIREMENTS.relative_to(REPO)})")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(digest)
    return python


def deno_binary() -> Path:
    from functions.runtime.sandbox import deno_executable

    return Path(deno_executable())


def ensure_raw_driver(deno: Path, deno_dir: Path, say=print) -> None:
    """Download the raw server's npm driver into its Deno cache once (npm registry, not jsr)."""
    stamp = deno_dir / ".cached"
    source = APPS / "raw" / "server.ts"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == digest:
        return
    say("caching the raw server's Postgres driver (npm:postgres) for Deno")
    deno_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DENO_DIR": str(deno_dir), "DENO_NO_UPDATE_CHECK": "1"}
    subprocess.run([str(deno), "cache", "--quiet", str(source)], check=True, env=env, cwd=source.parent)
    stamp.write_text(digest)


def prepare(say=print) -> Tools:
    ensure_wrk(say)
    python = ensure_bench_venv(say)
    deno = deno_binary()
    deno_dir = BENCH_VENV / "deno"
    ensure_raw_driver(deno, deno_dir, say)
    flux = Path(sys.executable).parent / "flux"
    if not flux.exists():
        raise RuntimeError(f"{flux} is missing: run `make setup` first")
    return Tools(flux=flux, deno=deno, bench_python=python, bench_bin=python.parent, deno_dir=deno_dir)


def bench_package_versions(python: Path) -> dict[str, str]:
    code = ("import importlib.metadata as m, json; print(json.dumps({n: m.version(n) for n in "
            "('fastapi', 'uvicorn', 'starlette', 'chalice', 'psycopg', 'psycopg-pool', 'py-spy')}))")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    import json

    return json.loads(done.stdout)
