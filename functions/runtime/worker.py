"""One Deno worker process and the host side of its RPC channel.

The worker reads JSON lines on stdin and answers with frames, one JSON line each,
on a FIFO created here before the spawn, which only the bootstrap holds open (it
drops its write permission before user code loads). Everything on stdout and
stderr is therefore stray output and becomes a log line of the invocation in
progress; no text user code prints can be taken for a frame. Every frame is
validated (functions/runtime/frames.py); a malformed one fails the invocation in
progress as a runtime error and retires the worker, and the reader keeps going.
One invocation runs at a time; during it the worker may issue many RPC calls,
which the host serves concurrently through the :class:`Invocation` it brings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from functions.runtime.errors import OutputTooLarge, ProtocolViolation, WorkerCrashed, WorkerStartFailed, WorkerTimedOut
from functions.runtime.frames import (
    CallFrame,
    DoneFrame,
    FrameError,
    IdleFrame,
    LogFrame,
    ReadyFrame,
    SpanFrame,
    parse_frame,
)
from functions.runtime.sandbox import WorkerCommand, limit_data

_log = logging.getLogger("flux.runtime")
_STREAM_LIMIT = 64 * 1024 * 1024


@dataclass
class Invocation:
    """What the host needs while one invocation runs: where calls, logs and spans go."""

    id: int
    on_call: Callable[[str, Any, str, int | None], Awaitable[Any]]
    on_log: Callable[[dict[str, Any]], None]
    on_span: Callable[[dict[str, Any]], None]
    done: asyncio.Future[dict[str, Any]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        # A crash reported after the caller gave up is expected; don't warn that nobody read it.
        self.done.add_done_callback(lambda f: f.cancelled() or f.exception())


class DenoWorker:
    def __init__(self, command: WorkerCommand, *, name: str) -> None:
        self.command = command
        self.name = name
        self.process: asyncio.subprocess.Process | None = None
        self._channel_reader: asyncio.StreamReader | None = None
        self._channel_transport: asyncio.ReadTransport | None = None
        self._keepalive_fd: int | None = None
        self._idle: dict[int, asyncio.Future[None]] = {}
        self.pending_after_return = 0
        self.invocations_served = 0
        self.started_at = 0.0
        self.load_error: dict[str, Any] | None = None
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._current: Invocation | None = None
        self._next_id = 0
        self._write_lock = asyncio.Lock()
        self._stderr_tail: deque[str] = deque(maxlen=40)
        self._readers: list[asyncio.Task[None]] = []
        self._exited = asyncio.Event()
        self.returncode: int | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.returncode is None and not self._exited.is_set()

    async def start(self, timeout_s: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self.started_at = time.perf_counter()
        await self._open_channel()
        # No preexec_fn: running Python between fork and exec can deadlock a threaded parent. The data
        # limit is set right after the spawn instead; it bounds every allocation the worker makes from then on.
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.command.argv,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=self.command.env, cwd=self.command.cwd, start_new_session=True, limit=_STREAM_LIMIT,
            )
        except BaseException:
            self._close_channel()
            raise
        try:
            limit_data(self.process.pid, self.command.data_limit_bytes)
            self._readers = [
                asyncio.create_task(self._read_channel(), name=f"{self.name}-channel"),
                asyncio.create_task(self._read_stdout(), name=f"{self.name}-stdout"),
                asyncio.create_task(self._read_stderr(), name=f"{self.name}-stderr"),
                asyncio.create_task(self._watch_exit(), name=f"{self.name}-exit"),
            ]
            self._readers[0].add_done_callback(self._reader_stopped)
            await self._send({"t": "hello"})
            ready = await asyncio.wait_for(asyncio.shield(self._ready), timeout_s)
        except (TimeoutError, WorkerCrashed) as exc:
            await self.kill()
            detail = self.stderr_tail() or str(exc) or "no output"
            raise WorkerStartFailed(f"the Deno worker for {self.name} did not start: {detail}") from None
        except BaseException:  # cancelled mid-start (reload, shutdown): never leave the process behind
            await asyncio.shield(self.kill())
            raise
        finally:
            self._unlink_channel()
        self.load_error = ready.error

    async def _open_channel(self) -> None:
        """Create the FIFO and hold both ends: the read end for frames, a write end so that the
        FIFO never reads as closed before the worker opens it (its exit is seen by _watch_exit)."""
        path = self.command.channel
        if path is None:
            raise WorkerStartFailed(f"the worker for {self.name} has no protocol channel")
        os.mkfifo(path, 0o600)
        read_fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self._keepalive_fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_STREAM_LIMIT)
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                    os.fdopen(read_fd, "rb", buffering=0))
        self._channel_reader, self._channel_transport = reader, transport

    def _unlink_channel(self) -> None:
        if self.command.channel is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.command.channel)

    def _close_channel(self) -> None:
        self._unlink_channel()
        if self._keepalive_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._keepalive_fd)
            self._keepalive_fd = None
        if self._channel_transport is not None:
            self._channel_transport.close()
            self._channel_transport = None

    async def invoke(self, input_value: Any, ctx: dict[str, Any], invocation: Invocation,
                     timeout_s: float) -> DoneFrame:
        """Run one invocation; returns the ``done`` frame. Raises WorkerTimedOut / WorkerCrashed."""
        if not self.alive:
            raise WorkerCrashed(f"the worker for {self.name} is not running")
        self._current = invocation
        try:
            await self._send({"t": "invoke", "id": invocation.id, "input": input_value, "ctx": ctx})
            try:
                done: DoneFrame = await asyncio.wait_for(asyncio.shield(invocation.done), timeout_s)
            except TimeoutError:
                await self.kill()
                raise WorkerTimedOut(timeout_s) from None
            self.pending_after_return = done.pending
            if done.pending:
                self._idle[invocation.id] = asyncio.get_running_loop().create_future()
            return done
        finally:
            self.invocations_served += 1
            for task in list(invocation.tasks):
                task.cancel()
            if not invocation.done.done():
                # Cancelled from outside (a caller timed out, shutdown): the user code may still be running,
                # so this worker must not serve anyone else.
                await asyncio.shield(self.kill())
            self._current = None

    async def wait_idle(self, invocation_id: int, grace_s: float) -> bool:
        """After a ``done`` that left work scheduled: True once the bootstrap reports it all ran,
        False if it is still running after ``grace_s`` (the caller then recycles this worker)."""
        waiter = self._idle.get(invocation_id)
        if waiter is None:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(waiter), grace_s)
            return True
        except TimeoutError:
            return False
        finally:
            self._idle.pop(invocation_id, None)

    def next_invocation_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr_tail).strip()

    async def kill(self) -> None:
        """Kill the worker's whole process group (it may have spawned children) and reap it."""
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            # The worker leads its own process group, so this reaches it and anything it spawned. (No
            # process.kill() after it: Popen polls first and would reap the child behind asyncio's watcher.)
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            except PermissionError:
                process.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(process.wait(), 5)
        self.returncode = process.returncode
        self._exited.set()
        self._close_channel()
        current = self._current
        if current is not None and not current.done.done():
            current.done.set_exception(WorkerCrashed("the Deno worker was stopped (reload or shutdown)"))
        for task in self._readers:
            if task is not asyncio.current_task():
                task.cancel()

    def _reader_stopped(self, task: asyncio.Task[None]) -> None:
        """The channel reader must never stop while the process lives; if it does, the worker is unusable."""
        if task.cancelled() or task.exception() is None:
            return
        _log.error("the channel reader of %s failed: %r", self.name, task.exception())
        current = self._current
        if current is not None and not current.done.done():
            current.done.set_exception(WorkerCrashed("the worker's output could not be read"))
        self._exited.set()
        self._killing = asyncio.ensure_future(self.kill())

    async def _send(self, message: dict[str, Any]) -> None:
        assert self.process is not None and self.process.stdin is not None
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        async with self._write_lock:
            try:
                self.process.stdin.write(data)
                await self.process.stdin.drain()
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise WorkerCrashed(f"the worker for {self.name} closed its input") from exc

    async def _read_channel(self) -> None:
        reader = self._channel_reader
        assert reader is not None
        while True:
            try:
                raw = await reader.readline()
            except ValueError:  # a line longer than the stream limit: the invocation's output is unreadable
                await reader.read(_STREAM_LIMIT)
                self._fail_current(OutputTooLarge(
                    f"the function wrote a message over {_STREAM_LIMIT // (1024 * 1024)} MiB "
                    "(return value or log line)"))
                continue
            if not raw:
                return
            try:
                data = json.loads(raw)
            except RecursionError:  # nested too deep for the parser
                self._too_deep(raw[:200].decode("utf-8", "replace"))
                continue
            except ValueError:
                self._protocol_violation("a frame from the worker is not JSON")
                continue
            try:
                frame = parse_frame(data)
            except FrameError as exc:
                self._protocol_violation(str(exc))
                continue
            self._on_frame(frame)

    async def _read_stdout(self) -> None:
        """User code's own stdout: every line is stray output, logged with the invocation."""
        assert self.process is not None and self.process.stdout is not None
        stream = self.process.stdout
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over the stream limit (already discarded by the reader)
                self._stray(f"[a stdout line over {_STREAM_LIMIT // (1024 * 1024)} MiB was dropped]", "warn")
                continue
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.strip():
                self._stray(line, "info")

    async def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        while True:
            raw = await self.process.stderr.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._stderr_tail.append(line)
                self._stray(line, "error")

    async def _watch_exit(self) -> None:
        assert self.process is not None
        code = await self.process.wait()
        self.returncode = code
        self._exited.set()
        error = WorkerCrashed(self._exit_reason(code))
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(error)
        current = self._current
        if current is not None and not current.done.done():
            # Let the readers drain the last frames before deciding the invocation crashed.
            await asyncio.sleep(0.02)
            if not current.done.done():
                current.done.set_exception(error)

    def _exit_reason(self, code: int | None) -> str:
        tail = self.stderr_tail()
        if "out of memory" in tail.lower() or "heap limit" in tail.lower():
            return f"the function ran out of memory (memory_mb limit) in worker {self.name}"
        if code is not None and code < 0:
            return f"the Deno worker was killed by signal {-code}"
        return f"the Deno worker exited with code {code}"

    def _fail_current(self, error: Exception) -> None:
        current = self._current
        if current is not None and not current.done.done():
            current.done.set_exception(error)

    def _protocol_violation(self, message: str) -> None:
        """A frame the bootstrap would never send: fail the invocation, retire the worker, keep reading."""
        _log.warning("worker %s: %s", self.name, message)
        self._fail_current(ProtocolViolation(message))
        if self.alive and not getattr(self, "_retiring", None):
            self._retiring = asyncio.ensure_future(self.kill())

    def _too_deep(self, line: str) -> None:
        current = self._current
        if current is None:
            return
        if '"t":"done"' in line[:200] and not current.done.done():
            current.done.set_exception(OutputTooLarge("the function's return value could not be decoded "
                                                      "(nested too deeply)"))
        else:
            self._stray("a log line or span could not be decoded (nested too deeply); dropped", "warn")

    def _stray(self, text: str, level: str) -> None:
        current = self._current
        if current is not None:
            current.on_log({"level": level, "message": text[:8192], "fields": {"stream": "stray"},
                            "span": "", "ts_us": time.time_ns() // 1000})
        else:
            _log.debug("[%s] %s", self.name, text)

    def _on_frame(self, frame: Any) -> None:
        if isinstance(frame, ReadyFrame):
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(frame)
            return
        if isinstance(frame, IdleFrame):
            waiter = self._idle.get(frame.id)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        current = self._current
        if current is None or (frame.id if isinstance(frame, DoneFrame) else frame.inv) != current.id:
            return  # late output of an invocation that already ended
        if isinstance(frame, DoneFrame):
            if not current.done.done():
                current.done.set_result(frame)
        elif isinstance(frame, LogFrame):
            current.on_log(frame.model_dump())
        elif isinstance(frame, SpanFrame):
            current.on_span(frame.span.model_dump())
        elif isinstance(frame, CallFrame):
            task = asyncio.create_task(self._serve_call(current, frame))
            current.tasks.add(task)
            task.add_done_callback(current.tasks.discard)

    async def _serve_call(self, invocation: Invocation, frame: CallFrame) -> None:
        reply: dict[str, Any] = {"t": "reply", "id": frame.id}
        try:
            value = await invocation.on_call(frame.method, frame.params, frame.span, frame.ts_us)
            reply.update(ok=True, value=value)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure goes back to user code as a FluxError
            status = getattr(exc, "status", 500)
            code = getattr(exc, "code", "internal_error")
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            if not getattr(exc, "status", None):
                _log.exception("RPC %s failed", frame.method)
            error: dict[str, Any] = {"status": status, "code": code, "message": message}
            retry_after = (getattr(exc, "headers", None) or {}).get("Retry-After") or \
                (getattr(exc, "headers", None) or {}).get("retry-after")
            if retry_after is not None:
                error["retry_after"] = str(retry_after)
            reply.update(ok=False, error=error)
        with contextlib.suppress(WorkerCrashed):
            await self._send(reply)
