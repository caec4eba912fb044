"""Lambda entry of the hosted observability API and dashboard.

The same :class:`ObservabilityApi` as ``flux dev``, over the DynamoDB span store,
behind an admin-key check against the gateway's key table (fail closed: without
``KEYS_TABLE`` every API call is refused). Built once per container, on the
first event, so imports and clients are paid for at most once per cold start.

Environment: ``SPANS_TABLE`` (required), ``KEYS_TABLE``, ``SPANS_SHARDS`` (8),
``ENGINE_FUNCTION`` (the engine Lambda for the schema graph and index advice; without
it those answer 503 / are left out), ``SLOW_QUERY_MS``, ``N_PLUS_ONE_THRESHOLD``,
``RETENTION_DAYS``, ``API_PREFIX`` (``/_flux/api``), ``DASHBOARD_PATH`` (``/_flux``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from functions.aws import names
from functions.observability.api import ObservabilityApi
from functions.observability.auth import admin_key_authorizer
from functions.observability.dynamo_schema import DEFAULT_SHARDS
from functions.observability.dynamo_store import DynamoSpanStore
from functions.observability.engine_advice import LambdaAdvice
from functions.observability.suggestions import recent_db_spans
from functions.shared.manifest import Observability

_api: ObservabilityApi | None = None
ENGINE_READ_TIMEOUT_S = 28  # under the API's own 29 s Lambda timeout


def settings_from_env(env: Mapping[str, str]) -> Observability:
    defaults = Observability()
    return Observability(
        slow_query_ms=int(env.get(names.SLOW_QUERY_MS) or defaults.slow_query_ms),
        n_plus_one_threshold=int(env.get(names.N_PLUS_ONE_THRESHOLD) or defaults.n_plus_one_threshold),
        retention_days=int(env.get(names.RETENTION_DAYS) or defaults.retention_days),
    )


def build_api(env: Mapping[str, str] = os.environ, client: Any | None = None,
              lambda_client: Any | None = None) -> ObservabilityApi:
    from functions.shared import aws_clients as clients

    if client is None:
        client = clients.client("dynamodb")
    settings = settings_from_env(env)
    store = DynamoSpanStore(client, env[names.SPANS_TABLE],
                            shards=int(env.get(names.SPANS_SHARDS) or DEFAULT_SHARDS),
                            retention_days=settings.retention_days)
    keys_table = env.get(names.KEYS_TABLE)
    if keys_table:
        from functions.gateway.keys_dynamodb import DynamoApiKeyStore

        authorize = admin_key_authorizer(DynamoApiKeyStore(keys_table, client))
    else:
        def authorize(event: dict[str, Any]) -> bool:
            return False
    advice = None
    engine = env.get(names.ENGINE_FUNCTION)
    if engine:
        if lambda_client is None:
            # One attempt: a retried invoke could run a second advice pass after the first timed out.
            lambda_client = clients.client("lambda", read_timeout_s=ENGINE_READ_TIMEOUT_S, max_attempts=1)
        advice = LambdaAdvice(engine, lambda_client, recent_spans=lambda: recent_db_spans(store))
    return ObservabilityApi(store, settings=settings, advice=advice,
                            prefix=env.get(names.API_PREFIX) or "/_flux/api",
                            authorize=authorize, dashboard_path=env.get(names.DASHBOARD_PATH) or None)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _api
    if _api is None:
        _api = build_api()
    return _api.handle(event)
