"""Lambda entry of the engine: migrations, the schema graph and index advice for the API and the CLI.

Queries never come here (the engine runs in-process in each runtime Lambda); this
function serves the slow, administrative actions with the same code ``flux db`` uses
locally. Event: ``{"action": "migrate" | "schema_graph" | "suggest", "spans": [...]}``.
Answer: ``{"ok": true, "result": ...}`` or ``{"ok": false, "status", "error", "message"}``.

``flux deploy`` invokes ``migrate`` right after a deployment and ``flux db migrate
--stage`` does it by hand (infra/remote.py), because the database sits in isolated
subnets that no laptop reaches. The function connects with the database secret of
the stack, which for a provisioned cluster is the owner's (master) credentials, as
migrations need, and reads the application role's secret (``DATABASE_APP_SECRET_ARN``):
each ``migrate`` creates or repairs that role and sets its password from the secret
(:mod:`functions.engine.app_role`), and for a ``database.url`` / ``secret_arn`` stack
writes the database's host into that secret, the only one the runtime may read
(:func:`functions.aws.database.publish_connection`). The DSN is read once per warm container
(:mod:`functions.aws.database`); migration files ship under ``$FLUX_SCHEMA_DIR``
(default ``$LAMBDA_TASK_ROOT/project/schema``); an event cannot point elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from functions.aws import names
from functions.aws.bundle import project_root
from functions.aws.database import app_role_secret, dsn_from_environment, publish_connection
from functions.engine.advice import AdvicePort, PostgresAdvice
from functions.engine.app_role import AppRole
from functions.engine.migrations import MigrationReport, apply_migrations
from functions.shared.errors import FluxError, ValidationFailed
from functions.shared.spans import Span

MAX_SPANS = 20_000
ACTIONS = ("migrate", "schema_graph", "suggest")


def make_handler(*, dsn_provider: Callable[[], str] | None = None,
                 advice_factory: Callable[[str], AdvicePort] | None = None,
                 migrate: Callable[..., MigrationReport] = apply_migrations,
                 schema_dir: Path | None = None, env: Mapping[str, str] | None = None,
                 app_secret_provider: Callable[[], dict[str, Any] | None] | None = None,
                 publish: Callable[[str, dict[str, Any]], bool] | None = None,
                 ) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    env = os.environ if env is None else env
    provider = dsn_provider or (lambda: dsn_from_environment(env))
    app_secret = app_secret_provider or (lambda: app_role_secret(env))
    publisher = publish or (lambda owner, document: publish_connection(env, owner, document))
    slow_ms = int(env.get(names.SLOW_QUERY_MS) or 100)
    threshold = int(env.get(names.N_PLUS_ONE_THRESHOLD) or 5)
    factory = advice_factory or (lambda dsn: PostgresAdvice(dsn, slow_query_ms=slow_ms,
                                                            n_plus_one_threshold=threshold))
    directory = schema_dir or Path(env.get(names.SCHEMA_DIR) or project_root(env) / "schema")
    cached: dict[str, str] = {}

    def dsn() -> str:
        if "dsn" not in cached:
            cached["dsn"] = provider()
        return cached["dsn"]

    def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        try:
            action = event.get("action") if isinstance(event, dict) else None
            if action not in ACTIONS:
                raise ValidationFailed(f"action: must be one of {', '.join(ACTIONS)}")
            if action == "migrate":
                return {"ok": True, "result": _migrate(dsn(), directory, migrate, app_secret(), publisher)}
            advice = factory(dsn())
            if action == "schema_graph":
                graph = advice.schema_graph()
                spans = _spans(event)
                if spans:
                    graph["suggested_indexes"] = advice.suggest_indexes(spans)
                return {"ok": True, "result": graph}
            return {"ok": True, "result": advice.suggest_indexes(_spans(event))}
        except FluxError as exc:
            return {"ok": False, "status": exc.status, "error": exc.code, "message": exc.message,
                    "headers": exc.headers}

    return handler


def _migrate(owner: str, directory: Path, migrate: Callable[..., MigrationReport],
             document: dict[str, Any] | None, publish: Callable[[str, dict[str, Any]], bool]) -> dict[str, Any]:
    """Apply the files as the owner and maintain the application role (its secret read fresh: a rotated
    password is set on the next migrate); then tell the runtime where the database is, when it must be told."""
    if document is None:   # a stack built with "app_role": false
        return migrate(owner, directory).to_dict()
    report = migrate(owner, directory, app_role=AppRole(document["username"], document["password"]))
    publish(owner, document)
    return report.to_dict()


def _spans(event: dict[str, Any]) -> list[Span]:
    raw = event.get("spans") or []
    if not isinstance(raw, list):
        raise ValidationFailed("spans: must be a list of span objects")
    if len(raw) > MAX_SPANS:
        raise ValidationFailed(f"spans: {len(raw)} spans; at most {MAX_SPANS} per call")
    try:
        return [Span.from_dict(item) for item in raw]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationFailed(f"spans: not a list of spans ({exc})") from None


handler = make_handler()
