"""Composition root of local mode: every layer wired with its local adapter.

``flux dev``, ``flux invoke`` (without a running server) and the e2e tests build
a :class:`LocalStack`; AWS builds the same layers with AWS adapters in each
Lambda's entry point. State lives under ``<project>/.flux/``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from functions.gateway.pipeline import HttpPipeline
from functions.local.gateway import LocalGateway
from functions.observability.buffered import BufferedSink
from functions.observability.sqlite_store import SqliteSpanStore
from functions.runtime.host import Runtime, RuntimeOptions, Services
from functions.runtime.local_secrets import SqliteSecretsStore
from functions.runtime.pool import PoolPolicy
from functions.shared.manifest import Project, load_project
from functions.shared.spans import NullSink, SafeSink, SpanSink

if TYPE_CHECKING:
    from functions.engine.locate import DatabaseLocation
    from functions.engine.service import DataEngine

_log = logging.getLogger("flux.local")


@dataclass(frozen=True)
class StatePaths:
    root: Path

    @classmethod
    def of(cls, project_root: Path) -> StatePaths:
        return cls(project_root / ".flux")

    @property
    def traces(self) -> Path:
        return self.root / "traces.db"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets.db"

    @property
    def keys(self) -> Path:
        return self.root / "keys.db"

    @property
    def queue(self) -> Path:
        return self.root / "queue.db"

    @property
    def postgres(self) -> Path:
        return self.root / "pg"

    @property
    def dev_file(self) -> Path:
        return self.root / "dev.json"


# flux dev runs every function of a project on one machine: a function's first worker starts with its first
# request (min_warm=0: a project of 30 functions does not start 30 Deno processes, ~40 MB each, at once),
# pools grow only when every worker is full and a caller waited 10 ms, surplus workers are retired after
# 5 s idle and the last one after 30 s.
LOCAL_POOL_POLICY = PoolPolicy(grow_after_s=0.01, surplus_idle_s=5.0, idle_s=30.0)


class LocalStack:
    def __init__(self, project_root: str | Path, *, tracing: bool | None = None, min_warm: int = 0,
                 max_workers: int = 4, pool_policy: PoolPolicy = LOCAL_POOL_POLICY,
                 on_request: Callable[[dict[str, Any]], None] | None = None,
                 use_database: bool = True, database_url: str | None = None,
                 out: Callable[[str], None] | None = None,
                 on_job: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.project: Project = load_project(project_root)
        self.paths = StatePaths.of(self.project.root)
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self.store = SqliteSpanStore(self.paths.traces,
                                     retention_days=self.project.config.observability.retention_days)
        enabled = self.project.config.observability.tracing if tracing is None else tracing
        self._buffer = BufferedSink(self.store) if enabled else None
        self.sink: SpanSink = SafeSink(self._buffer) if self._buffer is not None else NullSink()
        self.secrets = SqliteSecretsStore(self.paths.secrets)
        self.services = Services(secrets=self.secrets)
        self.runtime = Runtime(self.project, services=self.services,
                               options=RuntimeOptions(state_dir=self.paths.root, min_warm=min_warm,
                                                      max_workers=max_workers, pool_policy=pool_policy))
        self.on_job = on_job
        self.queue, self.dispatcher = self._queue(self.project)
        self.pipeline = HttpPipeline(self.project, self.runtime, sink=self.sink, on_complete=on_request,
                                     enqueue=self.services.queue)
        self.gateway = LocalGateway(self.project, self.pipeline, authorize=self._authorizer(self.project))
        self.use_database = use_database
        self.database_url = database_url
        self.database: DatabaseLocation | None = None
        self.engine: DataEngine | None = None
        self.out = out or (lambda _line: None)

    def _queue(self, project: Project) -> tuple[Any, Any]:
        """The durable SQLite queue, its dispatcher (running jobs through this runtime) and the enqueue service."""
        from functions.queue_consumer.local_dispatcher import LocalDispatcher
        from functions.queue_consumer.service import EnqueueService
        from functions.queue_consumer.sqlite_queue import SqliteJobQueue

        queue = SqliteJobQueue(self.paths.queue, max_attempts=_max_attempts(project))
        dispatcher = LocalDispatcher(queue, self.runtime, project, self.sink, on_attempt=self._job_settled)
        self.services.queue = EnqueueService(queue, project, on_enqueued=dispatcher.wake)
        return queue, dispatcher

    def _job_settled(self, job: Any, result: Any) -> None:
        if self.on_job is None:
            return
        span = result.span
        self.on_job({"function": job.function, "attempt": result.attempt, "outcome": result.outcome,
                     "trace_id": job.message.trace_id, "duration_us": span.duration_us if span else 0,
                     "error": result.error})

    def _authorizer(self, project: Project) -> Callable[[dict[str, Any]], dict[str, Any]]:
        from functions.gateway.local import build_local_authorizer

        return build_local_authorizer(project, secrets=self.secrets).authorize

    async def start(self) -> None:
        if self.use_database:
            await self._open_database()
        self.gateway.flux_app = self._observability_app()
        await self.runtime.start()
        # After workers and the database are up: runs jobs a previous, killed `flux dev` left behind.
        await self.dispatcher.start()

    def _observability_app(self) -> Any:
        """The API and dashboard under /_flux/, over this project's span store and database."""
        from functions.observability.api import ObservabilityApi
        from functions.observability.asgi import asgi_app
        from functions.observability.suggestions import recent_db_spans

        settings = self.project.config.observability
        advice = None
        if self.database is not None:
            from functions.engine.advice import PostgresAdvice

            advice = PostgresAdvice(self.database.dsn, slow_query_ms=settings.slow_query_ms,
                                    n_plus_one_threshold=settings.n_plus_one_threshold,
                                    recent_spans=lambda: recent_db_spans(self.store))
        self.observability = ObservabilityApi(self.store, settings=settings, advice=advice)
        return asgi_app(self.observability)

    async def _open_database(self) -> None:
        """Find (or start) Postgres, apply pending migrations, open the in-process Data Engine."""
        from functions.engine.locate import DatabaseLocation, locate_database, project_app_role
        from functions.engine.service import DataEngine

        if self.database_url:
            role = await asyncio.to_thread(project_app_role, self.project.root, self.database_url)
            self.database = DatabaseLocation(self.database_url, "env", app_role=role)
        else:
            self.database = await asyncio.to_thread(locate_database, self.project.root)
        self.out(f"database: {self.database.source} ({_describe_dsn(self.database.dsn)})")
        if self.database.app_role is None:
            self.out("database: user code runs as the migrating user (flux.json database.app_role is false)")
        await self.migrate()
        settings = self.project.config.observability
        # ctx.db as the application role (DML only); migrations and the advisor keep the owner's DSN.
        self.engine = DataEngine.create(self.database.app_dsn, slow_query_ms=settings.slow_query_ms)
        await self.engine.open()
        await self.engine.refresh_schema()
        self.services.db = self.engine

    async def migrate(self) -> list[str]:
        """Apply pending files of schema/ (raises MigrationError with the file and line on failure)."""
        from functions.engine.migrations import apply_migrations

        schema_dir = self.project.root / "schema"
        if self.database is None:
            return []
        # Also without schema/: the application role must exist before the engine logs in as it.
        report = await asyncio.to_thread(apply_migrations, self.database.dsn, schema_dir,
                                         app_role=self.database.app_role)
        if report.applied:
            self.out(f"migrations applied: {', '.join(report.applied)}")
        if self.engine is not None and report.applied:
            await self.engine.refresh_schema()
        return list(report.applied)

    async def reload(self) -> Project:
        """Re-read flux.json files and restart workers; on invalid files keep the running version."""
        project = load_project(self.project.root)
        authorize = self._authorizer(project)
        self.project = project
        self.gateway.set_project(project)
        self.gateway.authorize = authorize
        self.queue.set_max_attempts(_max_attempts(project))
        self.store.set_retention(project.config.observability.retention_days)
        self.dispatcher.update_project(project)
        self.services.queue.project = project  # type: ignore[union-attr]
        await self.runtime.reload(project)
        return project

    async def stop(self) -> None:
        # Jobs still running get a grace period, the rest go back to the queue for the next start.
        await self.dispatcher.stop(grace_s=10)
        self.queue.close()
        await self.runtime.close()
        if self.engine is not None:
            await self.engine.close()
        if self.database is not None:
            await asyncio.to_thread(self.database.stop)
        self.sink.flush()
        self.sink.close()

    def flush(self) -> None:
        self.sink.flush()


def _describe_dsn(dsn: str) -> str:
    """Host, port and database of a DSN, never its password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - only for display
        return "configured"
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


def _max_attempts(project: Project) -> dict[str, int]:
    return {name: spec.config.retry.max_attempts for name, spec in project.functions.items()}
