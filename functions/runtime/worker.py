"""One Deno worker process and the host side of its RPC channel.

The worker reads JSON lines on stdin and answers with frames, one JSON line each,
on a FIFO created here before the spawn, which only the bootstrap holds open (it
drops its write permission before user code loads). Everything on stdout and
stderr is therefore stray output and becomes a log line of the invocation in
progress; no text user code prints can be taken for a frame. Every frame is
validated (functions/runtime/frames.py); a malformed one fails the invocation in
progress as a runtime error and retires the worker, and the reader keeps going.
A worker runs several invocations at once (up to the pool's ``max_inflight``); every frame
names its invocation, and the host routes it to that invocation's :class:`Invocation`
(its calls, logs, spans, budget). Messages to the worker posted in one loop turn go out
in one write. Faults: an invocation over its timeout kills the worker (nothing else stops
runaway JavaScript), so its siblings fail with ``503 worker_recycled``; a crash fails every
invocation in flight with ``502 runtime_crashed``; a worker that may still run abandoned
work (a cancelled invocation, post-return work past its grace, a malformed frame) *retires*:
it takes no new invocation, finishes those in flight and is then stopped by its pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from functions.runtime.errors import (
    OutputTooLarge,
    ProtocolViolation,
    SiblingTimedOut,
    WorkerCrashed,
    WorkerStartFailed,
    WorkerTimedOut,
)
from functions.runtime.frames import (
    CallFrame,
    DoneFrame,
    FrameError,
    IdleFrame,
    LogFrame,
    ReadyFrame,
    SpanFrame,
    as_dict,
    decode_frame,
)
from functions.runtime.sandbox import WorkerCommand, limit_data
from functions.runtime.waiting import settled_within
from functions.shared.spans import redact

# One encoder for every frame: json.dumps(..., separators=...) builds a new one per call.
_compact_json = json.JSONEncoder(separators=(",", ":")).encode
_log = logging.getLogger("flux.runtime")
_STREAM_LIMIT = 64 * 1024 * 1024
# The invocation id in the first bytes of a frame the parser could not decode (the bootstrap writes "t" first,
# then "id" for done frames and "inv" for the others).
_FRAME_INV = re.compile(rb'^\{"t":"(\w+)","(?:id|inv)":(\d+)')


@dataclass
class Invocation:
    """What the host needs while one invocation runs: where calls, logs and spans go."""

    id: int
    on_call: Callable[[str, Any, str, int | None], Awaitable[Any]]
    on_log: Callable[[dict[str, Any]], None]
    on_span: Callable[[dict[str, Any]], None]
    # Credential values of this invocation's request: output no invocation can be tied to (raw stdout, logs
    # outside any invocation) is redacted with those of every invocation in flight before it is recorded.
    redactions: frozenset[str] = frozenset()
    done: asyncio.Future[DoneFrame] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
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
        self._ready: asyncio.Future[ReadyFrame] | None = None
        self._inflight: dict[int, Invocation] = {}
        self._next_id = 0
        self._outbox: list[bytes] = []
        self._stopping = False
        self.retiring: str | None = None  # why this worker takes no new invocations, once it does not
        self._stderr_tail: deque[str] = deque(maxlen=40)
        self._readers: list[asyncio.Task[None]] = []
        self._exited = asyncio.Event()
        self.returncode: int | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.returncode is None and not self._exited.is_set() \
            and not self._stopping

    @property
    def accepting(self) -> bool:
        """Alive and not retiring: the pool may hand it another invocation."""
        return self.alive and self.retiring is None

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def retire(self, reason: str) -> None:
        """Take no new invocation; the pool stops the worker once the ones it holds are released."""
        if self.retiring is None:
            self.retiring = reason
            _log.info("worker %s retires: %s", self.name, reason)

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
            self._post({"t": "hello"})
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
        """Run one invocation next to the others in flight; returns its ``done`` frame.

        Raises WorkerTimedOut (this one ran too long: the worker is killed and its siblings fail with
        SiblingTimedOut), WorkerCrashed (the worker died or was stopped) or a sibling's SiblingTimedOut.
        """
        if not self.alive:
            raise WorkerCrashed(f"the worker for {self.name} is not running")
        self._inflight[invocation.id] = invocation
        try:
            self._post({"t": "invoke", "id": invocation.id, "input": input_value, "ctx": ctx})
            if await settled_within(invocation.done, timeout_s):
                done: DoneFrame = await invocation.done  # its frame, or the crash / sibling timeout it failed with
            else:
                if not invocation.done.done():
                    invocation.done.set_exception(WorkerTimedOut(timeout_s))
                    await self.kill(SiblingTimedOut(
                        f"a sibling invocation of {self.name} in the same worker ran past its timeout_ms "
                        f"({int(timeout_s * 1000)} ms), so the worker was stopped with this invocation in it; "
                        "it was not retried"))
                done = await invocation.done  # a crash or sibling timeout may have come first: that error
            return done
        finally:
            self.invocations_served += 1
            self._inflight.pop(invocation.id, None)
            for task in list(invocation.tasks):
                task.cancel()
            if not invocation.done.done():
                # Cancelled from outside (a caller timed out, shutdown): the user code may still be running and
                # cannot be stopped alone, so the worker takes nobody new and stops once its siblings are done.
                self.retire("an invocation was cancelled while its code may still be running")

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

    async def kill(self, error: Exception | None = None) -> None:
        """Kill the worker's whole process group (it may have spawned children) and reap it; every invocation
        still in flight fails with ``error`` (by default: stopped for a reload or shutdown)."""
        process = self.process
        if process is None:
            return
        self._stopping = True
        self._fail_all(error or WorkerCrashed("the Deno worker was stopped (reload or shutdown)"))
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
        for task in self._readers:
            if task is not asyncio.current_task():
                task.cancel()

    def _fail_all(self, error: Exception) -> None:
        for invocation in list(self._inflight.values()):
            if not invocation.done.done():
                invocation.done.set_exception(error)

    def _reader_stopped(self, task: asyncio.Task[None]) -> None:
        """The channel reader must never stop while the process lives; if it does, the worker is unusable."""
        if task.cancelled() or task.exception() is None:
            return
        _log.error("the channel reader of %s failed: %r", self.name, task.exception())
        self._fail_all(WorkerCrashed("the worker's output could not be read"))
        self._exited.set()
        self._killing = asyncio.ensure_future(self.kill())

    def _post(self, message: dict[str, Any]) -> None:
        """Queue a message for the worker; everything posted in one loop turn goes out in one write, so many
        invocations and replies cost one system call and one wake-up of the worker instead of one each."""
        if not self.alive:
            raise WorkerCrashed(f"the worker for {self.name} is not running")
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.append((_compact_json(message) + "\n").encode())

    def _flush(self) -> None:
        data, self._outbox = b"".join(self._outbox), []
        stdin = self.process.stdin if self.process is not None else None
        if not data or stdin is None or stdin.is_closing():
            return
        try:
            # No drain: the worker reads its input all the time, and the transport buffers the rest; a worker
            # that stops reading is stopped by the timeout of the invocations waiting on it.
            stdin.write(data)
        except (BrokenPipeError, ConnectionResetError):
            _log.debug("the worker for %s closed its input", self.name)

    async def _read_channel(self) -> None:
        reader = self._channel_reader
        assert reader is not None
        while True:
            try:
                raw = await reader.readline()
            except ValueError:  # a line longer than the stream limit: unreadable, and whose it was is lost with it
                await reader.read(_STREAM_LIMIT)
                self._fail_all(OutputTooLarge(
                    f"an invocation of {self.name} wrote a message over {_STREAM_LIMIT // (1024 * 1024)} MiB "
                    "(return value, call or log line); every invocation in flight in its worker failed with it"))
                continue
            if not raw:
                return
            try:
                frame = decode_frame(raw)
            except RecursionError:  # nested too deep for the parser
                self._too_deep(raw[:200])
                continue
            except FrameError as exc:
                self._protocol_violation(str(exc), exc.data)
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
        if self._inflight:
            # Let the readers drain the last frames before deciding the invocations crashed.
            await asyncio.sleep(0.02)
            self._fail_all(error)

    def _exit_reason(self, code: int | None) -> str:
        tail = self.stderr_tail()
        if "out of memory" in tail.lower() or "heap limit" in tail.lower():
            return f"the function ran out of memory (memory_mb limit) in worker {self.name}"
        if code is not None and code < 0:
            return f"the Deno worker was killed by signal {-code}"
        return f"the Deno worker exited with code {code}"

    def _protocol_violation(self, message: str, data: Any) -> None:
        """A frame the bootstrap would never send: fail its invocation, retire the worker, keep reading."""
        _log.warning("worker %s: %s", self.name, message)
        target = self._owner(data)
        if target is not None and not target.done.done():
            target.done.set_exception(ProtocolViolation(message))
        self.retire(f"it sent a malformed frame ({message[:120]})")

    def _owner(self, data: Any) -> Invocation | None:
        """The invocation in flight a decoded but malformed frame belongs to, or the only one in flight."""
        if isinstance(data, dict):
            inv = data.get("id") if data.get("t") == "done" else data.get("inv")
            if isinstance(inv, int) and not isinstance(inv, bool) and inv in self._inflight:
                return self._inflight[inv]
        return next(iter(self._inflight.values())) if len(self._inflight) == 1 else None

    def _too_deep(self, head: bytes) -> None:
        match = _FRAME_INV.match(head)
        invocation = self._inflight.get(int(match.group(2))) if match else None
        if invocation is None:
            return
        if match is not None and match.group(1) == b"done" and not invocation.done.done():
            invocation.done.set_exception(OutputTooLarge("the function's return value could not be decoded "
                                                         "(nested too deeply)"))
        else:
            invocation.on_log(self._stray_record("a log line or span could not be decoded (nested too deeply); "
                                                 "dropped", "warn", 1))

    def _stray(self, text: str, level: str) -> None:
        """Output no invocation can be tied to (raw stdout/stderr, logs outside any invocation): recorded with the
        oldest invocation in flight, redacted with the credentials of all of them (it may be any one's)."""
        if not self._inflight:
            _log.debug("[%s] %s", self.name, text)
            return
        inflight = list(self._inflight.values())
        if len(inflight) > 1:
            text = redact(text, frozenset().union(*(i.redactions for i in inflight)))
        inflight[0].on_log(self._stray_record(text, level, len(inflight)))

    @staticmethod
    def _stray_record(text: str, level: str, inflight: int) -> dict[str, Any]:
        fields: dict[str, Any] = {"stream": "stray"}
        if inflight > 1:
            fields["inflight"] = inflight  # the line may come from any of these invocations of the worker
        return {"level": level, "message": text[:8192], "fields": fields, "span": "",
                "ts_us": time.time_ns() // 1000}

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
        inv = frame.id if isinstance(frame, DoneFrame) else frame.inv
        invocation = self._inflight.get(inv)
        if invocation is None:
            if isinstance(frame, CallFrame):  # a call after its invocation ended: refused, so it does not hang
                self._refuse_call(frame)
            elif isinstance(frame, LogFrame) and inv == 0:  # logged outside any invocation (module code)
                self._stray(frame.message, frame.level)
            return  # otherwise late output of an invocation that already ended
        if isinstance(frame, DoneFrame):
            if not invocation.done.done():
                if frame.pending:  # before the next frame is read: its idle frame may be right behind it
                    self._idle[inv] = asyncio.get_running_loop().create_future()
                invocation.done.set_result(frame)
        elif isinstance(frame, LogFrame):
            invocation.on_log(as_dict(frame))
        elif isinstance(frame, SpanFrame):
            invocation.on_span(as_dict(frame.span))
        elif isinstance(frame, CallFrame):
            task = asyncio.create_task(self._serve_call(invocation, frame))
            invocation.tasks.add(task)
            task.add_done_callback(invocation.tasks.discard)

    def _refuse_call(self, frame: CallFrame) -> None:
        error = {"status": 500, "code": "function_error",
                 "message": f"ctx call {frame.method[:64]} was made after its invocation returned; work after "
                            "return is not allowed"}
        with contextlib.suppress(WorkerCrashed):
            self._post({"t": "reply", "id": frame.id, "ok": False, "error": error})

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
            self._post(reply)
