"""The warm state of one runtime Lambda container, shared by its HTTP and queue entry points.

A container serves one user function (``FLUX_FUNCTION``) of the project bundled
at ``FLUX_PROJECT_DIR``. Everything is built once, on the first event: the
project, a Deno worker pool (only this function's pool is kept warm; others
start on demand for ``ctx.function.invoke``), the Data Engine in-process, the
SQS enqueue service, Secrets Manager, and the DynamoDB span sink.

Worker pipes are bound to the event loop that created them, so the container
keeps one loop for its whole life (:func:`get_loop`) and every entry point runs
its coroutine on it. Spans are buffered and flushed before each response,
because Lambda freezes the container as soon as the handler returns.

Environment: FLUX_PROJECT_DIR, FLUX_FUNCTION, SPANS_TABLE, SPANS_SHARDS,
DATABASE_SECRET_ARN (+ DATABASE_HOST, the RDS Proxy endpoint) or DATABASE_URL,
FLUX_QUEUE_URLS, FLUX_JOBS_TABLE, FLUX_SECRETS_PREFIX, FLUX_DENO, FLUX_DENO_DIR
(the vendored Deno cache in the bundle), FLUX_EXPOSE_ERRORS.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from functions.runtime.host import Runtime, RuntimeOptions, Services
from functions.runtime.http import HttpPipeline
from functions.shared.manifest import Project, load_project
from functions.shared.spans import NullSink, SafeSink, SpanSink

_log = logging.getLogger("flux.runtime")


@dataclass
class LambdaState:
    project: Project
    runtime: Runtime
    pipeline: HttpPipeline
    sink: SpanSink


_state: LambdaState | None = None
_loop: asyncio.AbstractEventLoop | None = None


def get_loop() -> asyncio.AbstractEventLoop:
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop


def _sink(env: Mapping[str, str], project: Project) -> SpanSink:
    table = env.get("SPANS_TABLE")
    if not table:
        return NullSink()
    import boto3

    from functions.observability.buffered import BufferedSink
    from functions.observability.dynamo_schema import DEFAULT_SHARDS
    from functions.observability.dynamo_store import DynamoSpanStore

    store = DynamoSpanStore(boto3.client("dynamodb"), table, shards=int(env.get("SPANS_SHARDS") or DEFAULT_SHARDS),
                            retention_days=project.config.observability.retention_days)
    return SafeSink(BufferedSink(store, linger_s=0))  # flushed before every response anyway


def _services(env: Mapping[str, str], project: Project) -> Services:
    services = Services()
    prefix = env.get("FLUX_SECRETS_PREFIX")
    if prefix:
        import boto3

        from functions.runtime.aws_secrets import SecretsManagerStore

        services.secrets = SecretsManagerStore(boto3.client("secretsmanager"), prefix)
    if env.get("FLUX_QUEUE_URLS"):
        from functions.queue_consumer.service import EnqueueService
        from functions.queue_consumer.sqs_queue import SqsJobQueue

        services.queue = EnqueueService(SqsJobQueue.from_env(environ=env), project)
    dsn = database_url(env)
    if dsn:
        from functions.engine.service import DataEngine

        settings = project.config.observability
        # Warm containers re-read the schema every minute, so migrations applied by the engine Lambda show up.
        services.db = DataEngine.create(dsn, slow_query_ms=settings.slow_query_ms, schema_ttl_s=60,
                                        statement_timeout_ms=int(env.get("FLUX_STATEMENT_TIMEOUT_MS") or 5000))
    return services


def database_url(env: Mapping[str, str]) -> str | None:
    """The DSN from DATABASE_URL or the DATABASE_SECRET_ARN secret, as the engine Lambda reads it."""
    if not (env.get("DATABASE_URL") or env.get("DATABASE_SECRET_ARN")):
        return None
    from functions.engine.handler import dsn_from_environment

    return dsn_from_environment(env)


def build_state(env: Mapping[str, str] = os.environ) -> LambdaState:
    root = Path(env.get("FLUX_PROJECT_DIR") or Path(env.get("LAMBDA_TASK_ROOT", ".")) / "project")
    project = load_project(root)
    function = env.get("FLUX_FUNCTION")
    sink = _sink(env, project)
    spec = project.functions.get(function or "")
    # The HTTP Lambda of an async function only enqueues; its worker Lambda is the one that runs Deno.
    only_enqueues = spec is not None and spec.is_async and env.get("_HANDLER", "").endswith("lambda_handler.handler")
    warm = frozenset() if only_enqueues else frozenset({function}) if function else None
    options = RuntimeOptions(
        state_dir=Path(env.get("FLUX_STATE_DIR") or "/tmp/flux"),  # noqa: S108 - Lambda's only writable place
        min_warm=1, max_workers=4, expose_errors=env.get("FLUX_EXPOSE_ERRORS") == "1",
        deno=env.get("FLUX_DENO"), warm_functions=warm,
        deno_dir=Path(env["FLUX_DENO_DIR"]) if env.get("FLUX_DENO_DIR") else None,
    )
    services = _services(env, project)
    runtime = Runtime(project, options=options, services=services)
    pipeline = HttpPipeline(project, runtime, sink=sink, enqueue=services.queue)
    return LambdaState(project, runtime, pipeline, sink)


def state() -> LambdaState:
    global _state
    if _state is None:
        _state = build_state()
        loop = get_loop()
        db = _state.runtime.services.db
        if db is not None and hasattr(db, "open"):
            loop.run_until_complete(db.open())
        loop.run_until_complete(_state.runtime.start())
    return _state


def get_project() -> Project:
    return state().project


def get_sink() -> SpanSink:
    return state().sink


def get_invoker() -> Runtime:
    return state().runtime


def reset() -> None:
    """Drop the container state (tests)."""
    global _state
    if _state is not None:
        get_loop().run_until_complete(_state.runtime.close())
    _state = None


def run(coro: Any) -> Any:
    return get_loop().run_until_complete(coro)
