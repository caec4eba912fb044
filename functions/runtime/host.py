"""The runtime host: warm worker pools for every function, and the services behind ``ctx``.

:class:`Runtime` implements the :class:`~functions.runtime.ports.Invoker` port.
An invocation gets a function span (child of the caller's span), runs in a
worker from that function's pool under ``timeout_ms``, and has its RPC calls
dispatched here: ``db.*`` to the Data Engine, ``queue.push`` to the queue,
``secrets.get`` to the secrets store (only names the function declares in its
flux.json ``secrets``), ``function.invoke`` back into this class (with the
callee's ``input_schema`` and auth rules applied).
Everything the invocation writes — its logs and custom spans, and the spans of the
engine and queue calls it makes — goes through a :class:`GuardedSink` that redacts
every secret value ever handed to user code and bounds the request's volume.
A worker runs several invocations of its function at once (``max_inflight``), each
with its own ctx, calls, budget and timers; module-level state is shared between them.
A function that returns with timers or calls still pending gets a short grace
period; if they have not finished then, its worker retires (takes no new invocation,
finishes the others in flight, then stops) and the trace says so.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from functions.gateway.validation import validate_input
from functions.runtime.errors import FunctionNotFound, InvocationDepthExceeded, InvokeNotDeclared, PushNotDeclared
from functions.runtime.guard import Budget, GuardedSink
from functions.runtime.pool import DEFAULT_MAX_INFLIGHT, PoolPolicy, WorkerPool
from functions.runtime.ports import DbService, QueueService
from functions.runtime.sandbox import deno_executable, isolation, link_vendored_cache, worker_command
from functions.runtime.worker import DenoWorker, Invocation
from functions.shared.apigw import FunctionResponse
from functions.shared.context import CallContext
from functions.shared.errors import (
    FluxError,
    Forbidden,
    FunctionError,
    Unauthorized,
    UserError,
    ValidationFailed,
    error_for_code,
)
from functions.shared.ids import new_span_id
from functions.shared.secrets import SecretsStore
from functions.shared.spans import LOG_LEVELS, LogRecord, Span, now_us, redact, start_span

if TYPE_CHECKING:
    from functions.shared.manifest import FunctionSpec, Project

_log = logging.getLogger("flux.runtime")
_ERROR_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_INVOKE_DEPTH = 8
# How long work a function left scheduled (timers, unawaited calls) may run after it returned.
POST_RETURN_GRACE_S = 0.2
# Credential values (tokens, keys, cookie values) at least this long are redacted from a request's logs and spans.
_MIN_CREDENTIAL_CHARS = 8
# Span attributes only Flux sets: user code may not mark its spans as request rows.
_RESERVED_ATTRS = frozenset({"root"})


class ServiceUnavailable(FluxError):
    status, code = 500, "service_unavailable"


class SecretNotDeclared(Forbidden):
    code = "secret_not_declared"


@dataclass
class RuntimeOptions:
    state_dir: Path
    min_warm: int = 1
    max_workers: int = 4
    expose_errors: bool = True
    deno: str | None = None
    # Functions whose pools are kept warm; None means all. A runtime Lambda warms only its own.
    warm_functions: frozenset[str] | None = None
    deno_dir: Path | None = None  # a vendored, read-only Deno cache (a Lambda bundle's), linked into state_dir/deno
    # How pools grow and shrink: by default at once and never (a Lambda serves one function).
    pool_policy: PoolPolicy = field(default_factory=PoolPolicy)
    # Invocations one Deno worker runs at once; a function runs at most its flux.json concurrency in all.
    max_inflight: int = DEFAULT_MAX_INFLIGHT


@dataclass
class Services:
    db: DbService | None = None
    queue: QueueService | None = None
    secrets: SecretsStore | None = None


@dataclass
class _Collected:
    call: CallContext
    function: str
    spec: FunctionSpec
    guard: GuardedSink
    depth: int = 0
    secrets: set[str] = field(default_factory=set)
    credentials: frozenset[str] = frozenset()


class _Redactions:
    """The values one invocation redacts: every secret handed out so far (a live set) and its request's
    credentials."""

    def __init__(self, secrets: set[str], credentials: frozenset[str]) -> None:
        self.secrets = secrets
        self.credentials = credentials

    def __iter__(self) -> Iterator[str]:
        yield from self.secrets
        yield from self.credentials


class Runtime:
    def __init__(self, project: Project, *, options: RuntimeOptions, services: Services | None = None) -> None:
        """Spans and logs go to each invocation's ``CallContext.sink``, chosen by whoever calls."""
        self.project = project
        self.options = options
        self.services = services or Services()
        self._deno = options.deno or deno_executable()
        self._cache_dir = options.state_dir / "deno"
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        if options.deno_dir is not None:
            link_vendored_cache(options.deno_dir, self._cache_dir)
        self._pools: dict[str, WorkerPool] = {}
        # Every secret value ever handed to user code: a warm worker may keep one in a variable and log it
        # in a later request, so redaction cannot be limited to the request that fetched it.
        self._secret_values: set[str] = set()
        # Each worker's protocol FIFO lives here (private to this process's user, removed on close).
        self._channels = Path(tempfile.mkdtemp(prefix="flux-channels-"))
        self.isolation = isolation()
        self._background: set[asyncio.Task[None]] = set()
        self._build_pools(project)

    def _build_pools(self, project: Project) -> None:
        warm = self.options.warm_functions
        for name, spec in project.functions.items():
            min_warm = self.options.min_warm if warm is None or name in warm else 0
            self._pools[name] = WorkerPool(name, self._factory(spec), min_warm=min_warm,
                                           max_workers=min(self.options.max_workers, spec.config.concurrency),
                                           acquire_timeout_s=spec.config.timeout_ms / 1000,
                                           policy=self.options.pool_policy,
                                           max_inflight=self.options.max_inflight,
                                           max_concurrent=spec.config.concurrency)

    def _factory(self, spec: FunctionSpec):
        def make() -> DenoWorker:
            command = worker_command(spec, deno=self._deno, cache_dir=self._cache_dir, project_root=self.project.root,
                                     channel=self._channels / f"{spec.name}-{os.urandom(8).hex()}.fifo",
                                     namespace=self.isolation == "namespace")
            return DenoWorker(command, name=spec.name)
        return make

    async def start(self) -> None:
        await asyncio.gather(*(pool.warm() for pool in self._pools.values()))

    async def reload(self, project: Project) -> None:
        """Swap in a new project (hot reload): new pools warm up, old workers are stopped."""
        old = self._pools
        self.project = project
        self._pools = {}
        self._build_pools(project)
        await asyncio.gather(*(pool.close(drain=True) for pool in old.values()), return_exceptions=True)
        await self.start()

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.gather(*(pool.close() for pool in self._pools.values()), return_exceptions=True)
        shutil.rmtree(self._channels, ignore_errors=True)

    def pool(self, name: str) -> WorkerPool:
        return self._pools[name]

    async def invoke(self, function: str, payload: Any, call: CallContext, *,
                     span_attrs: dict[str, Any] | None = None) -> Any:
        return await self._invoke(function, payload, call, span_attrs, depth=0, budget=Budget())

    async def _invoke(self, function: str, payload: Any, call: CallContext, span_attrs: dict[str, Any] | None,
                      *, depth: int, budget: Budget) -> Any:
        spec = self.project.functions.get(function)
        pool = self._pools.get(function)
        if spec is None or pool is None:
            raise FunctionNotFound(f"no function named {function!r}")
        if depth >= MAX_INVOKE_DEPTH:
            raise InvocationDepthExceeded(f"ctx.function.invoke nested more than {MAX_INVOKE_DEPTH} deep")
        span = start_span(call.trace_id, call.parent_span_id, "function", function, issued_us=call.issued_us,
                          function=function,
                          **(span_attrs or {}))
        request = call.request if depth == 0 else None
        credentials = self._credentials(request)
        redacted = _Redactions(self._secret_values, credentials)
        guard = GuardedSink(call.sink, redacted, budget)
        collected = _Collected(call=CallContext(call.trace_id, span.span_id, function, call.request_id, guard,
                                                call.auth, request=request),
                               function=function, spec=spec, guard=guard, depth=depth,
                               secrets=self._secret_values, credentials=credentials)
        try:
            value, cold = await self._run(spec, pool, payload, collected, span_attrs or {})
        except FluxError as exc:
            self._redact_error(exc)
            self._finish(span, "error", collected, exc, cold=getattr(exc, "cold", None))
            raise
        except BaseException as exc:  # cancelled (the caller went away): still record what happened
            cancelled = FluxError("the invocation was cancelled before it finished")
            cancelled.code = "cancelled"  # type: ignore[misc]
            self._finish(span, "error", collected, cancelled, cold=None)
            raise exc from None
        self._finish(span, "ok", collected, None, cold=cold)
        return value

    async def _run(self, spec: FunctionSpec, pool: WorkerPool, payload: Any, collected: _Collected,
                   span_attrs: dict[str, Any]) -> tuple[Any, bool]:
        worker, cold = await pool.acquire(overflow=collected.depth)
        try:
            invocation = Invocation(
                id=worker.next_invocation_id(),
                on_call=lambda method, params, span_id, issued: self._serve(method, params, span_id, issued,
                                                                            collected),
                on_log=lambda frame: self._log(frame, collected),
                on_span=lambda frame: self._custom_span(frame, collected),
                redactions=collected.credentials,
            )
            ctx = {
                "requestId": collected.call.request_id,
                "traceId": collected.call.trace_id,
                "spanId": collected.call.parent_span_id,
                "auth": collected.call.auth or {"type": "none"},
            }
            request = collected.call.request
            if request is not None:
                body = request.get("body") or b""
                ctx["request"] = {**{k: v for k, v in request.items() if k != "body"}, "length": len(body)}
            if "job_id" in span_attrs:
                ctx["job"] = {"id": span_attrs["job_id"], "attempt": span_attrs.get("attempt", 1)}
            try:
                done = await worker.invoke(payload, ctx, invocation, spec.config.timeout_ms / 1000)
            except FluxError as exc:
                exc.cold = cold  # type: ignore[attr-defined]
                raise
        except BaseException:
            await pool.release(worker)
            raise
        if done.pending and worker.alive:
            # Work is still scheduled: the caller gets its answer now; the invocation keeps its place in the
            # worker until that work has run (or the worker retires after the grace period).
            task = asyncio.ensure_future(self._settle(pool, worker, invocation.id, done.pending, collected))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        else:
            await pool.release(worker)
        if done.ok:
            if done.response is not None:
                r = done.response
                return FunctionResponse(r.status, tuple((k, v) for k, v in r.headers), r.body, r.base64), cold
            return done.value, cold
        error = self._user_error(done.error or {})
        error.cold = cold  # type: ignore[attr-defined]
        raise error

    async def _settle(self, pool: WorkerPool, worker: DenoWorker, invocation_id: int, pending: int,
                      collected: _Collected) -> None:
        """Wait for post-return work; past the grace period, retire the worker and say so in the trace.

        Retire, not kill: the worker's other invocations in flight are not at fault; it takes no new one, they
        finish, and the pool then stops it (its lingering work with it) and starts a fresh one when needed."""
        started = now_us()
        try:
            if not await worker.wait_idle(invocation_id, POST_RETURN_GRACE_S):
                worker.retire(f"post-return work of {collected.function} outlived the grace period")
                message = (f"worker recycled: {collected.function} returned with {pending} timer(s) or call(s) "
                           f"still pending, still running {int(POST_RETURN_GRACE_S * 1000)} ms later; work after "
                           "return is not allowed, so the worker was retired: it takes no new invocation, "
                           "finishes those in flight, then is stopped and replaced")
                sink = collected.call.sink
                sink.write_spans([Span(collected.call.trace_id, new_span_id(),
                                       collected.call.parent_span_id, "custom", "post-return work (worker recycled)",
                                       started, now_us() - started, "error",
                                       {"function": collected.function, "pending": pending,
                                        "error.message": message})])
                sink.write_logs([LogRecord(collected.call.trace_id, collected.call.parent_span_id, now_us(), "warn",
                                           collected.function, message, {"pending": pending})])
        finally:
            await pool.release(worker)

    def _user_error(self, info: dict[str, Any]) -> FluxError:
        status = info.get("status")
        code = info.get("code")
        message = str(info.get("message") or "the function failed")
        valid = isinstance(status, int) and not isinstance(status, bool) and 400 <= status <= 599 \
            and isinstance(code, str) and _ERROR_CODE.match(code) is not None
        if not valid:  # user code tampered with a FluxError's fields after constructing it
            status, code = 500, "function_error"
            info = {**info, "user": False}
        if info.get("user"):
            error: FluxError = UserError(status, code, message)
            retry_after = info.get("retry_after")
            if isinstance(retry_after, str) and retry_after.isdigit():
                error.headers["retry-after"] = retry_after
        elif code == "function_error":
            error = FunctionError(message if self.options.expose_errors else
                                  "the function threw an error; see the trace for details")
        else:
            error = error_for_code(code, message)
        error.details = {k: info[k] for k in ("name", "stack", "file", "line", "column") if info.get(k) is not None}
        error.details["message"] = message
        return error

    def _redact_error(self, exc: FluxError) -> None:
        """An error travels on (HTTP body, queue job error, DLQ, dev server line): no secret value in it."""
        exc.message = redact(exc.message, self._secret_values)
        exc.args = tuple(redact(a, self._secret_values) if isinstance(a, str) else a for a in exc.args)
        exc.details = redact(exc.details, self._secret_values)

    def _finish(self, span: Any, status: str, collected: _Collected, error: FluxError | None, *,
                cold: bool | None) -> None:
        attrs: dict[str, Any] = dict(collected.guard.budget.summary()) if collected.depth == 0 else {}
        if cold is not None:
            attrs["cold"] = cold
        if error is not None:
            attrs["error.code"] = error.code
            attrs["error.status"] = error.status
            attrs["error.message"] = error.details.get("message", error.message)
            for key in ("stack", "file", "line", "column", "name"):
                if key in error.details:
                    attrs[f"error.{key}"] = error.details[key]
        finished = collected.guard.clean_span(span.finish(status, **attrs))
        if error is not None:  # the internal message, secrets redacted, for operators' views (the DLQ's last error)
            error.details["message"] = finished.attrs.get("error.message", error.message)
        collected.guard.inner.write_spans([finished])  # never dropped: it is the invocation's own row
        if attrs.get("logs.dropped") or attrs.get("spans.dropped"):
            collected.guard.inner.write_logs([LogRecord(
                collected.call.trace_id, span.span_id, now_us(), "warn", collected.function,
                f"[truncated] this request went over its limits: {attrs.get('logs.dropped', 0)} log lines "
                f"({attrs.get('logs.dropped_bytes', 0)} bytes) and {attrs.get('spans.dropped', 0)} spans dropped",
                {})])

    async def _serve(self, method: str, params: Any, span_id: str, issued_us: int | None,
                     collected: _Collected) -> Any:
        call = collected.call.child(span_id or collected.call.parent_span_id, issued_us=issued_us)
        if method == "db.query":
            return await self._db().query(params, call)
        if method == "db.batch":
            return await self._db().batch(params, call)
        if method == "queue.push":
            args = params if isinstance(params, dict) else {}
            target = args.get("function")
            if not isinstance(target, str):
                raise ValidationFailed("ctx.queue.push(name, payload): name must be a string")
            self._check_declared("push", target, collected)
            if self.services.queue is None:
                raise ServiceUnavailable("ctx.queue is not available in this runtime")
            options = args.get("options") if isinstance(args.get("options"), dict) else {}
            return await self.services.queue.push(target, args.get("payload"), options, call)
        if method == "secrets.get":
            name = params.get("name") if isinstance(params, dict) else None
            if not isinstance(name, str) or not name:
                raise ValidationFailed("ctx.secrets.get(name): name must be a non-empty string")
            if name not in collected.spec.secrets:
                folder = f"{self.project.config.functions_dir}/{collected.function}/flux.json"
                raise SecretNotDeclared(
                    f"ctx.secrets.get({name!r}): {collected.function} does not declare this secret; add "
                    f"\"secrets\": {json.dumps([*collected.spec.secrets, name])} to {folder}")
            store = self.services.secrets
            value = await asyncio.to_thread(store.get, name) if store is not None else None
            if value:
                collected.secrets.add(value)
            return value
        if method == "request.body":
            request = collected.call.request
            if request is None:
                raise ValidationFailed("ctx.request is not available: this invocation has no HTTP request")
            return base64.b64encode(request.get("body") or b"").decode("ascii")
        if method == "function.invoke":
            args = params if isinstance(params, dict) else {}
            target = args.get("function")
            if not isinstance(target, str):
                raise ValidationFailed("ctx.function.invoke(name, payload): name must be a string")
            self._check_invoke(target, args.get("payload"), collected)
            result = await self._invoke(target, args.get("payload"), call, None, depth=collected.depth + 1,
                                        budget=collected.guard.budget)
            return result.as_json() if isinstance(result, FunctionResponse) else result
        raise ValidationFailed(f"unknown ctx call {method!r}")

    def _check_invoke(self, target: str, payload: Any, collected: _Collected) -> None:
        """ctx.function.invoke runs the callee with the caller's auth: the callee's auth mode must be met
        by it (an anonymous caller cannot reach an api_key or jwt function) unless the callee is internal,
        and the payload must pass the callee's input_schema, as it would over HTTP."""
        spec = self.project.functions.get(target)
        if spec is None:
            raise FunctionNotFound(f"no function named {target!r}")
        self._check_declared("invoke", target, collected)
        caller_auth = (collected.call.auth or {}).get("type", "none")
        if spec.auth != "none" and not spec.internal and caller_auth != spec.auth and not spec.auth_optional:
            raise Unauthorized(f"ctx.function.invoke({target!r}): {target} requires {spec.auth} auth and this "
                               f"request has {caller_auth}; mark {target} \"internal\": true to allow calls from "
                               "other functions whatever their caller")
        if spec.config.input_schema is not None:
            validate_input(spec.config.input_schema, payload)

    def _check_declared(self, kind: str, target: str, collected: _Collected) -> None:
        """A push or invoke must be declared in the caller's flux.json (``pushes`` / ``invokes``): in AWS the
        caller's role reaches only the queues and secrets of what it declares (and its Lambda knows only those
        queues), so the refusal happens here, before any queue is looked up, and reads the same locally and in
        AWS. The loader has checked that every declared push names an async function."""
        verb, field, declared, error = (
            ("push to", "pushes", collected.spec.pushes, PushNotDeclared) if kind == "push" else
            ("invoke", "invokes", collected.spec.invokes, InvokeNotDeclared))
        if target in declared:
            return
        spec = self.project.functions.get(target)
        if kind == "push" and spec is None:
            known = ", ".join(sorted(n for n, s in self.project.functions.items() if s.is_async)) or "none"
            raise ValidationFailed(f"ctx.queue.push: there is no function named {target!r} (async functions: {known})")
        if kind == "push" and not spec.is_async:
            raise ValidationFailed(f"ctx.queue.push: function {target!r} is not async; set \"async\": true in its "
                                   "flux.json to run it from the queue")
        folder = f"{self.project.config.functions_dir}/{collected.function}/flux.json"
        raise error(f"{collected.function} may not {verb} {target}: add "
                    f"\"{field}\": {json.dumps([*declared, target])} to {folder}")

    def _credentials(self, request: dict[str, Any] | None) -> frozenset[str]:
        """The credential values a request carries (API key, token, cookies): user code may read them from
        ctx.request, but they must never reach a span or a log, so they are redacted like secrets."""
        if not request:
            return frozenset()
        headers = request.get("headers") or {}
        jwt = self.project.config.auth.jwt
        names = {"authorization", "x-api-key", "cookie", "proxy-authorization", *(([jwt.header]) if jwt else [])}
        # Short values ("dark", "en") are not credentials and would blank out ordinary words in logs.
        values: set[str] = set()
        for name in names:
            value = headers.get(name)
            if isinstance(value, str) and value:
                values.update(v for v in (value, *value.split(" ")) if len(v) >= _MIN_CREDENTIAL_CHARS)
        for value in (request.get("cookies") or {}).values():
            if isinstance(value, str) and len(value) >= _MIN_CREDENTIAL_CHARS:
                values.add(value)
        return frozenset(values)

    def _db(self) -> DbService:
        if self.services.db is None:
            raise ServiceUnavailable("ctx.db is not available: no database is configured for this runtime")
        return self.services.db

    def _log(self, frame: dict[str, Any], collected: _Collected) -> None:
        """A validated log frame (or a stray-output line) into the request's guarded sink."""
        level = str(frame.get("level") or "info")
        fields = frame.get("fields")
        record = LogRecord(
            trace_id=collected.call.trace_id,
            span_id=str(frame.get("span") or collected.call.parent_span_id),
            ts_us=int(frame.get("ts_us") or 0),
            level=level if level in LOG_LEVELS else "info",
            function=collected.function,
            message=str(frame.get("message") or ""),
            fields=fields if isinstance(fields, dict) else {},
        )
        collected.guard.write_logs([record])

    def _custom_span(self, frame: dict[str, Any], collected: _Collected) -> None:
        """A validated span frame: never a request row, always under this invocation's trace."""
        span = Span.from_dict({**frame, "trace_id": collected.call.trace_id})
        if not span.parent_span_id:
            span.parent_span_id = collected.call.parent_span_id
        attrs = {k: v for k, v in span.attrs.items() if k not in _RESERVED_ATTRS}
        span.attrs = {**attrs, "function": collected.function}
        collected.guard.write_spans([span])
