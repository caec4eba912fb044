"""`flux dev`: serve a project on 127.0.0.1 with hot reload, until Ctrl-C.

Uvicorn serves the local gateway. Its own signal capture re-raises the signal
after shutdown, which would cut our cleanup short, so :class:`_Server` replaces
it with handlers that only ask the server to exit; the stack (workers, embedded
Postgres, queue dispatcher) is then stopped in order and nothing is left running.

:func:`run` drives it on uvloop with uvicorn's httptools parser: the gateway's event loop is the
dev server's bottleneck (bench/PROFILE.md), and both cut its per-request cost against asyncio + h11.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import uvicorn
import uvloop

from functions.local.stack import LocalStack
from functions.shared.errors import FluxError
from functions.shared.manifest import ManifestError
from functions.shared.terminal import escape

Printer = Callable[[str], None]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._request_exit)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _request_exit(self) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True


# Young-generation threshold of the cyclic GC while `flux dev` serves (CPython's default is 700).
GC_YOUNG_THRESHOLD = 10_000


@contextlib.contextmanager
def collector_tuned(young: int = GC_YOUNG_THRESHOLD) -> Generator[None, None, None]:
    """Run the cyclic GC's young collection every ``young`` net allocations instead of every 700.

    Why: with tracing on, each request's spans live ~50 ms in the span buffer before the writer stores
    them. At 700 they survived a young collection every ~70 requests, were promoted and traversed
    again in older collections: under a hello load 1,273 young and 10 full collections took 0.69 s of
    CPU in 14 s (0.14 s with tracing off). At 10,000 most spans are written and freed before any
    collection looks at them: 13 young collections, 0.045 s (bench/PROFILE.md section 8). Memory is
    not at stake: garbage cycles are found after 10,000 allocations instead of 700.
    """
    before = gc.get_threshold()
    gc.set_threshold(young, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def run(project_dir: Path, **options: Any) -> int:
    """:func:`serve` on a uvloop event loop (what ``flux dev`` runs)."""
    with collector_tuned(), asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(serve(project_dir, **options))


async def serve(project_dir: Path, *, host: str = "127.0.0.1", port: int = 4000, watch: bool = True,
                out: Printer = print, tracing: bool | None = None) -> int:
    # Method, path and job errors come from clients and user code: escaped, so a request for
    # "/%1b]52;c;...%07" cannot write the terminal's clipboard and "%0a" cannot forge a line.
    def on_request(info: dict[str, Any]) -> None:
        out(f"{escape(info['method']):<6} {escape(info['path']):<32} {info['status']}  "
            f"{info['duration_us'] / 1000:7.1f} ms  {info['trace_id']}")

    def on_job(info: dict[str, Any]) -> None:
        label = f"{escape(info['function'])} #{info['attempt']}"
        out(f"{'JOB':<6} {label:<32} {escape(info['outcome']):<3}  {info['duration_us'] / 1000:7.1f} ms  "
            f"{info['trace_id']}" + (f"  {escape(info['error'][:120])}" if info["error"] else ""))

    started = time.perf_counter()
    stack = LocalStack(project_dir, on_request=on_request, tracing=tracing, out=out, on_job=on_job)
    try:
        await stack.start()
    except FluxError as exc:
        out("flux dev could not start: " + "\n  ".join(escape(line) for line in exc.message.split("\n")))
        await stack.stop()
        return 1
    except BaseException:  # anything else (a bug, Ctrl-C during start): still stop what already started
        await stack.stop()
        raise
    # proxy_headers=False: uvicorn would otherwise take X-Forwarded-For from 127.0.0.1 (every local
    # client) as the client address; the gateway reads it only from gateway.trusted_proxies.
    # http="httptools": the C parser (h11, uvicorn's pure-Python fallback, showed in the profile).
    server = _Server(uvicorn.Config(stack.gateway, host=host, port=port, http="httptools", log_level="warning",
                                    lifespan="off",
                                    access_log=False, timeout_graceful_shutdown=5, proxy_headers=False,
                                    forwarded_allow_ips=""))
    watcher: asyncio.Task[None] | None = None
    try:
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.02)
        if serving.done():
            with contextlib.suppress(SystemExit):  # uvicorn exits the task when it cannot bind
                await serving
            out(f"could not listen on {host}:{port}: is another server using that port? (try --port)")
            return 1
        url = f"http://{host}:{port}"
        _banner(stack, url, out, time.perf_counter() - started)
        stack.paths.dev_file.write_text(json.dumps({"url": url, "port": port, "pid": os.getpid()}))
        if watch:
            watcher = asyncio.create_task(_watch(stack, out))
        await serving
    finally:
        try:
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            with contextlib.suppress(FileNotFoundError):
                stack.paths.dev_file.unlink()
        finally:
            await stack.stop()
            out("stopped")
    return 0


def _banner(stack: LocalStack, url: str, out: Printer, elapsed: float) -> None:
    project = stack.project
    out(f"flux dev: {project.config.name} ready in {elapsed:.1f}s")
    for spec in sorted(project.functions.values(), key=lambda s: (s.route, s.method)):
        mode = "async" if spec.is_async else "sync"
        out(f"  {spec.method:<6} {url}{spec.route:<28} -> {spec.name} ({mode}, auth: {spec.auth})")
    out(f"  dashboard: {url}/_flux/")
    if stack.runtime.isolation != "namespace":
        out("  warning: workers run without a private mount namespace here (unshare unavailable or "
            "FLUX_SANDBOX_NAMESPACE=0): .flux/ and other functions are kept out by Deno's permissions and "
            "the link checks only")
    out("  Ctrl-C to stop")


async def _watch(stack: LocalStack, out: Printer) -> None:
    from watchfiles import awatch

    root = stack.project.root
    functions_dir = root / stack.project.config.functions_dir
    schema_dir = root / "schema"
    lib_dir = root / "lib"  # shared code: a change reloads every function that may import it

    def relevant(_change: Any, path: str) -> bool:
        p = Path(path)
        if ".flux" in p.parts or "node_modules" in p.parts:
            return False
        return p == root / "flux.json" or functions_dir in p.parents or schema_dir in p.parents \
            or lib_dir in p.parents

    async for changes in awatch(root, watch_filter=relevant, debounce=200, step=50):
        try:
            await _apply_changes(stack, root, schema_dir, {Path(p) for _, p in changes}, out)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - hot reload must survive anything a change can cause
            out(f"reload failed ({type(exc).__name__}: {escape(exc)}); still serving the previous version")


async def _apply_changes(stack: LocalStack, root: Path, schema_dir: Path, paths: set[Path], out: Printer) -> None:
    """Migrate on schema/ changes; reload flux.json and functions on the others."""
    names = sorted(escape(p.relative_to(root).as_posix()) for p in paths)
    if any(schema_dir in p.parents for p in paths):
        try:
            await stack.migrate()
        except FluxError as exc:
            out(f"migration failed: {escape(exc.message)}")
    if all(schema_dir in p.parents for p in paths):
        return
    try:
        project = await stack.reload()
    except ManifestError as exc:
        out("reload failed; still serving the previous version:")
        for problem in exc.problems:
            out(f"  {escape(problem)}")
        return
    out(f"reloaded ({', '.join(names[:3])}{'...' if len(names) > 3 else ''}): "
        f"{len(project.functions)} functions")
