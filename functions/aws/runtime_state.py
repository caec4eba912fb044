"""The warm state of one runtime Lambda container, shared by the HTTP and worker entry points.

A container serves one user function (``FLUX_FUNCTION``) of the project bundled
at ``FLUX_PROJECT_DIR``, in one of two roles, given by the entry point that
builds it (never guessed from ``_HANDLER``):

* ``http`` (:mod:`functions.aws.entry_http`): the function's route; for an async
  function it only enqueues, so it keeps no Deno worker warm;
* ``worker`` (:mod:`functions.aws.entry_worker`): an async function's SQS batches.

What can be built before any event is built during INIT (the entry modules call
:func:`prepare` at import): the validated project, the pipeline, the SQS enqueue
service and the DynamoDB span sink. What costs real time or money is left to the
request that needs it, so a request the authorizer denied (answered by the pipeline
before it invokes anything) never pays for it:

* Deno starts on the first invocation that reaches the function (the pool spawns
  its first worker on demand, then keeps it warm). It is not started in INIT: an
  environment whose first requests are denied (a flood of bad credentials) must not
  start a worker (the deployed tier checks this: tests/deployed/test_denials.py);
* the Secrets Manager client is created on the first ``ctx.secrets.get``;
* the Data Engine (secret read, pool) on the first ``ctx.db`` call
  (:mod:`functions.aws.lazy_db`).

If building fails in INIT the failure is logged and the first event builds again
(as before this was moved into INIT), so a transient failure does not cost the
environment an INIT error and a restart.

Worker pipes are bound to the event loop that created them, so the container
keeps one loop for its whole life and every entry point runs its coroutine on it.

Spans: Lambda freezes the environment once the runtime and every extension have
asked for their next event. :func:`prepare` registers an internal extension
(:mod:`functions.aws.extension`) and the sink only collects
(:class:`~functions.aws.deferred_sink.DeferredSink`); the extension thread writes
a request's spans after the response is posted and before the environment can be
frozen. Without the Extensions API (registration refused, the thread stopped, or
outside Lambda) :func:`finish` writes them before the handler returns, as before.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from functions.aws import names
from functions.aws.bundle import project_root
from functions.aws.extension import ExtensionsClient, SpanFlushExtension
from functions.gateway.pipeline import HttpPipeline
from functions.runtime.host import Runtime, RuntimeOptions, Services
from functions.shared.manifest_bundle import load_packaged_project
from functions.shared.spans import NullSink, SafeSink, SpanSink

if TYPE_CHECKING:
    from functions.shared.manifest import Project

Role = Literal["http", "worker"]
DEFAULT_STATEMENT_TIMEOUT_MS = 5000
POOL_MAX = 10  # one request at a time per container, but Promise.all over ctx.db runs queries side by side
SCHEMA_TTL_S = 60  # warm containers re-read the schema every minute, so the engine Lambda's migrations show up


@dataclass
class RuntimeState:
    project: Project
    runtime: Runtime
    pipeline: HttpPipeline
    sink: SpanSink
    services: Services
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.runtime.close())
        db = self.services.db
        if db is not None and hasattr(db, "close"):
            self.run(db.close())


def _sink(env: Mapping[str, str], project: Project, *, deferred: bool) -> SpanSink:
    """``deferred``: collect only, the extension writes after the response; else write as spans arrive."""
    table = env.get(names.SPANS_TABLE)
    if not table:
        return NullSink()
    from functions.observability.dynamo_schema import DEFAULT_SHARDS
    from functions.observability.dynamo_store import DynamoSpanStore
    from functions.shared.aws_clients import LazyClient

    # Created on the first write, which the extension makes after the first response: neither INIT nor
    # that response waits for boto3 and DynamoDB's service model.
    store = DynamoSpanStore(LazyClient("dynamodb"), table, shards=int(env.get(names.SPANS_SHARDS) or DEFAULT_SHARDS),
                            retention_days=project.config.observability.retention_days)
    if deferred:
        from functions.aws.deferred_sink import DeferredSink

        return DeferredSink(store)
    from functions.observability.buffered import BufferedSink

    return SafeSink(BufferedSink(store, linger_s=0))  # flushed before every response


def _database(env: Mapping[str, str], project: Project) -> Any:
    from functions.aws import database
    from functions.aws.lazy_db import LazyDatabase

    if not database.configured(env):
        return None
    settings = project.config.observability
    timeout_ms = int(env.get(names.STATEMENT_TIMEOUT_MS) or DEFAULT_STATEMENT_TIMEOUT_MS)

    async def build() -> Any:
        from functions.engine.executor import PsycopgExecutor
        from functions.engine.service import DataEngine, EngineSettings

        dsn = await asyncio.to_thread(database.dsn_from_environment, env)
        engine_settings = EngineSettings(statement_timeout_ms=timeout_ms, slow_query_ms=settings.slow_query_ms,
                                         schema_ttl_s=SCHEMA_TTL_S, pool_min=1, pool_max=POOL_MAX)
        # proxy_safe: the server may be behind RDS Proxy (no startup options, no session state to pin).
        executor = PsycopgExecutor(dsn, statement_timeout_ms=timeout_ms, min_size=1, max_size=POOL_MAX,
                                   connect_timeout_s=engine_settings.connect_timeout_s, proxy_safe=True)
        engine = DataEngine(executor, engine_settings)
        await engine.open()
        return engine

    return LazyDatabase(build, explain=lambda engine, exc: database.explain_unavailable(engine, exc, env))


def _services(env: Mapping[str, str], project: Project) -> Services:
    services = Services()
    prefix = env.get(names.SECRETS_PREFIX)
    if prefix:
        from functions.runtime.aws_secrets import SecretsManagerStore
        from functions.shared.aws_clients import LazyClient

        services.secrets = SecretsManagerStore(LazyClient("secretsmanager"), prefix)
    if env.get(names.QUEUE_URLS):
        from functions.aws.queue import sqs_job_queue
        from functions.queue_consumer.service import EnqueueService

        services.queue = EnqueueService(sqs_job_queue(env), project)
    services.db = _database(env, project)
    return services


def build_state(role: Role, env: Mapping[str, str] = os.environ,
                loop: asyncio.AbstractEventLoop | None = None, *, deferred: bool = False) -> RuntimeState:
    project = load_packaged_project(project_root(env))  # the bundle's pre-validated manifest
    function = env.get(names.FUNCTION)
    sink = _sink(env, project, deferred=deferred)
    spec = project.functions.get(function or "")
    # The HTTP Lambda of an async function only enqueues; its worker Lambda is the one that runs Deno.
    only_enqueues = role == "http" and spec is not None and spec.is_async
    warm = frozenset() if only_enqueues else frozenset({function}) if function else None
    options = RuntimeOptions(
        state_dir=Path(env.get(names.STATE_DIR) or "/tmp/flux"),  # noqa: S108 - Lambda's only writable place
        min_warm=1, max_workers=4, expose_errors=env.get(names.EXPOSE_ERRORS) == "1",
        deno=env.get(names.DENO), warm_functions=warm,
        deno_dir=Path(env[names.DENO_DIR]) if env.get(names.DENO_DIR) else None,
    )
    services = _services(env, project)
    runtime = Runtime(project, options=options, services=services)
    pipeline = HttpPipeline(project, runtime, sink=sink, enqueue=services.queue)
    return RuntimeState(project, runtime, pipeline, sink, services, loop or asyncio.new_event_loop())


_states: dict[Role, RuntimeState] = {}
_extension: SpanFlushExtension | None = None
_log = logging.getLogger("flux.aws.runtime_state")


def _flush_all() -> None:
    """What the extension runs after each handler: every state's pending spans."""
    for current in list(_states.values()):
        current.sink.flush()


def state(role: Role) -> RuntimeState:
    """The container's state for ``role``, built on first use (normally already by :func:`prepare`).

    No Deno worker is started here: the pool starts one for the first invocation.
    """
    current = _states.get(role)
    if current is None:
        current = build_state(role, deferred=_extension is not None)
        _states[role] = current
    return current


def finish(current: RuntimeState | None, context: Any) -> None:
    """End of a handler: hand the spans to the extension, or write them now when there is none.

    ``current`` is None when the state could not be built: the extension is still told, or it would
    hold the environment until the invocation's deadline waiting for this handler.
    """
    extension = _extension
    if extension is not None and extension.active and extension.handler_done(getattr(context, "aws_request_id",
                                                                                       None)):
        return
    if current is not None:
        current.sink.flush()


def prepare(role: Role) -> None:
    """Register the span extension, then build the state, during INIT (module import).

    The extension must register before the runtime's first Next, which ends INIT. A
    state that fails to build is left for the first event to retry.
    """
    global _extension
    address = os.environ.get(names.LAMBDA_RUNTIME_API)
    if not address:
        return  # imported outside a Lambda execution environment (tests, tooling): nothing to prepare
    if _extension is None:
        extension = SpanFlushExtension(ExtensionsClient(address), _flush_all)
        if extension.start():
            _extension = extension
    try:
        state(role)
    except Exception:  # noqa: BLE001 - INIT must not crash the environment; the first event builds again
        _log.exception("runtime state: cannot build during INIT; the first event will retry")


def install(role: Role, current: RuntimeState) -> None:
    """Use ``current`` as the container's state for ``role`` (tests drive an entry point with fakes)."""
    _states[role] = current


def reset() -> None:
    """Drop every container state (tests)."""
    for current in list(_states.values()):
        current.close()
    _states.clear()
