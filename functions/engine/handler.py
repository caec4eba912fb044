"""The engine Lambda: migrations, the schema graph and index advice for the API and the CLI.

Queries never come here (the engine runs in-process in each runtime Lambda); this
function serves the slow, administrative actions with the same code ``flux db`` uses
locally. Event: ``{"action": "migrate" | "schema_graph" | "suggest", "spans": [...]}``.
Answer: ``{"ok": true, "result": ...}`` or ``{"ok": false, "status", "error", "message"}``.

The DSN comes from ``DATABASE_URL`` or from the Secrets Manager secret named by
``DATABASE_SECRET_ARN`` (the RDS secret JSON: host, port, username, password, dbname),
read once per warm container. Migration files ship with the function under
``$FLUX_SCHEMA_DIR`` (default ``$LAMBDA_TASK_ROOT/schema``); an event cannot point
elsewhere.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from psycopg.conninfo import make_conninfo

from functions.engine.advice import AdvicePort, PostgresAdvice
from functions.engine.errors import EngineError
from functions.engine.migrations import MigrationReport, apply_migrations
from functions.shared.errors import FluxError, ValidationFailed
from functions.shared.spans import Span

MAX_SPANS = 20_000
ACTIONS = ("migrate", "schema_graph", "suggest")


def dsn_from_environment(env: Mapping[str, str] | None = None, *, secrets_client: Any = None) -> str:
    env = os.environ if env is None else env
    url = env.get("DATABASE_URL", "").strip()
    if url:
        return url
    arn = env.get("DATABASE_SECRET_ARN", "").strip()
    if not arn:
        raise EngineError("no database configured: set DATABASE_URL or DATABASE_SECRET_ARN")
    if secrets_client is None:
        import boto3

        secrets_client = boto3.client("secretsmanager")
    secret = secrets_client.get_secret_value(SecretId=arn)["SecretString"]
    if secret.strip().startswith(("postgres://", "postgresql://")):
        return secret.strip()
    try:
        data = json.loads(secret)
    except json.JSONDecodeError:
        raise EngineError("the database secret is neither a URL nor RDS secret JSON") from None
    # A provisioned cluster is reached through its RDS Proxy (DATABASE_HOST), not the host in the secret.
    host = env.get("DATABASE_HOST", "").strip() or data["host"]
    return make_conninfo(host=host, port=str(data.get("port", 5432)),
                         dbname=data.get("dbname") or data.get("database") or "postgres",
                         user=data["username"], password=data["password"],
                         sslmode=env.get("DATABASE_SSLMODE", "require"))


def make_handler(*, dsn_provider: Callable[[], str] | None = None,
                 advice_factory: Callable[[str], AdvicePort] | None = None,
                 migrate: Callable[[str, Path], MigrationReport] = apply_migrations,
                 schema_dir: Path | None = None, env: Mapping[str, str] | None = None
                 ) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    env = os.environ if env is None else env
    provider = dsn_provider or (lambda: dsn_from_environment(env))
    slow_ms = int(env.get("FLUX_SLOW_QUERY_MS", "100"))
    threshold = int(env.get("FLUX_N_PLUS_ONE_THRESHOLD", "5"))
    factory = advice_factory or (lambda dsn: PostgresAdvice(dsn, slow_query_ms=slow_ms,
                                                            n_plus_one_threshold=threshold))
    directory = schema_dir or Path(env.get("FLUX_SCHEMA_DIR") or Path(env.get("LAMBDA_TASK_ROOT", ".")) / "schema")
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
                return {"ok": True, "result": migrate(dsn(), directory).to_dict()}
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
