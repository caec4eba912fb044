"""The stacks under test: how each is started, and how long it took to answer its first request.

Every stack serves the same three endpoints on 127.0.0.1 (``GET /hello``, ``POST /items``,
``GET /items?category=...``) against the same database:

- ``flux``          ``flux dev`` on bench/apps/flux (tracing on: spans to SQLite);
- ``flux-notrace``  the same with ``--no-tracing``;
- ``raw``           bench/apps/raw/server.ts, ``Deno.serve`` + postgres.js (the floor);
- ``fastapi``       bench/apps/fastapi_app, FastAPI + uvicorn + psycopg pool (one process);
- ``chalice``       bench/apps/chalice_app under ``chalice local --no-autoreload``.

Flux is run from a copy of its app in a temporary folder, so its ``.flux/`` state (span
store, Deno cache) never lands in the repository and every run starts from the same state.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.procs import ManagedProcess

REPO = Path(__file__).resolve().parents[1]
APPS = REPO / "bench" / "apps"
STACKS = ("flux", "flux-notrace", "raw", "fastapi", "chalice")


@dataclass(frozen=True, slots=True)
class Tools:
    """Where the binaries are: this repo's venv (flux, deno) and the bench venv (baselines)."""

    flux: Path
    deno: Path
    bench_python: Path
    bench_bin: Path
    deno_dir: Path   # Deno cache of the raw server (its npm driver)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def copy_flux_app(name: str, into: Path) -> Path:
    target = into / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(APPS / name, target, ignore=shutil.ignore_patterns(".flux", "__pycache__"))
    return target


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL", "BENCH_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_COLOR"] = "1"
    return env


def command(stack: str, tools: Tools, *, port: int, dsn: str, flux_project: Path) -> tuple[list[str], Path, dict]:
    """argv, working directory and environment to start ``stack`` on ``port``."""
    env = base_env()
    if stack in ("flux", "flux-notrace"):
        env["DATABASE_URL"] = dsn
        argv = [str(tools.flux), "dev", str(flux_project), "--port", str(port), "--no-watch"]
        if stack == "flux-notrace":
            argv.append("--no-tracing")
        return argv, REPO, env
    if stack == "raw":
        env["DENO_DIR"] = str(tools.deno_dir)
        env["DENO_NO_UPDATE_CHECK"] = "1"
        return ([str(tools.deno), "run", "--quiet", "--allow-net=127.0.0.1", "--allow-env", "--allow-read",
                 "--allow-sys", str(APPS / "raw" / "server.ts"), str(port), dsn], APPS / "raw", env)
    if stack == "fastapi":
        env["BENCH_DSN"] = dsn
        return ([str(tools.bench_python), "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port),
                 "--log-level", "warning", "--no-access-log"], APPS / "fastapi_app", env)
    if stack == "chalice":
        env["BENCH_DSN"] = dsn
        return ([str(tools.bench_bin / "chalice"), "local", "--no-autoreload", "--host", "127.0.0.1",
                 "--port", str(port)], APPS / "chalice_app", env)
    raise ValueError(f"unknown stack {stack!r}; known: {', '.join(STACKS)}")


def wait_ready(url: str, process: ManagedProcess, *, timeout_s: float = 90.0) -> float:
    """Seconds from the process's spawn to its first 200 on ``url`` (raises if it dies or never answers)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if not process.alive():
                raise RuntimeError(f"{process.argv[0]} exited before answering:\n{process.log_tail()}")
            try:
                if client.get(url).status_code == 200:
                    return time.perf_counter() - process.started_at
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
    raise RuntimeError(f"no 200 from {url} within {timeout_s:.0f}s:\n{process.log_tail()}")


def check_endpoints(base: str) -> dict[str, object]:
    """One call of each endpoint, so a stack that answers errors is caught before it is measured."""
    with httpx.Client(timeout=10.0) as client:
        hello = client.get(f"{base}/hello")
        inserted = client.post(f"{base}/items", json={"name": "check", "category": "c1", "price": 1.5})
        selected = client.get(f"{base}/items", params={"category": "c1"})
        ordered = client.post(f"{base}/orders", json={"item_id": 7, "quantity": 2})
    problems = [f"{name}: {r.status_code} {r.text[:200]}" for name, r in
                (("hello", hello), ("insert", inserted), ("select", selected), ("real", ordered))
                if r.status_code != 200]
    if problems:
        raise RuntimeError("endpoint check failed: " + "; ".join(problems))
    rows = selected.json().get("items", [])
    if len(rows) != 20 or "id" not in inserted.json():
        raise RuntimeError(f"unexpected answers: select gave {len(rows)} rows, insert gave {inserted.text[:200]}")
    order = ordered.json()
    item = order.get("item") or {}
    if str(item.get("id")) != "7" or "orders" not in item or "id" not in (order.get("order") or {}):
        raise RuntimeError(f"unexpected answer from POST /orders: {ordered.text[:200]}")
    return {"hello": hello.json(), "insert_keys": sorted(inserted.json()), "select_rows": len(rows)}


def python_version() -> str:
    return sys.version.split()[0]
