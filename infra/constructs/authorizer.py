"""The REQUEST Lambda authorizer in front of function routes (functions/gateway/handler.py).

One Lambda, up to three API Gateway authorizer objects (see infra/plan.py for
which route gets which): ``metered`` (no cache, no identity sources: every
request is authenticated *and* counted against its rate limit), and ``cached-api_key``
/ ``cached-jwt`` (results cached per credential header and route key, for routes that
authenticate but have no rate limit). Simple responses, payload format 2.0.

The role may read and touch API-key records, read and write rate-limit buckets and,
when ``auth.jwt.secret_name`` is set, read that one secret. Nothing else: in
particular not the database secret.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from constructs import Construct

from infra.constructs.function import FluxFunction
from infra.constructs.runtime_functions import TASK_ROOT, CodeAssets
from infra.constructs.secrets import ProjectSecrets
from infra.constructs.tables import BUCKET_WRITER, KEY_CHECKER, FluxTables, grant
from infra.packaging import BUNDLE_PROJECT_DIR
from infra.plan import AUTH_CACHE_TTL_S, CREDENTIAL_HEADERS, AuthorizerKind, FunctionPlan, StackPlan

HANDLER = "functions.gateway.handler.handler"
TIMEOUT_S = 10  # API Gateway gives an authorizer 10 s at most
MEMORY_MB = 512  # more memory is more CPU: the cold start sits in front of a user's request


class FluxAuthorizer(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, plan: StackPlan, code: CodeAssets,
                 tables: FluxTables, secrets: ProjectSecrets, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        self.lambda_ = FluxFunction(
            self, "Authorizer", code=code.control, handler=HANDLER,
            environment={
                "FLUX_PROJECT_DIR": f"{TASK_ROOT}/{BUNDLE_PROJECT_DIR}",
                "KEYS_TABLE": tables.keys.table_name,
                "RATE_LIMIT_TABLE": tables.rate_limits.table_name,
                "FLUX_SECRETS_PREFIX": plan.secrets_prefix,
            },
            timeout_s=TIMEOUT_S, memory_mb=MEMORY_MB, architecture=code.architecture,
            description=f"Flux {plan.project}/{plan.stage}: authorizer (API keys, JWT, rate limits)",
            retention_days=plan.retention_days, removal_policy=removal_policy)
        grant(tables.keys, self.lambda_.role, KEY_CHECKER)
        grant(tables.rate_limits, self.lambda_.role, BUCKET_WRITER)
        if plan.jwt_secret_name:
            secrets.grant_read_one(self.lambda_.role, plan.jwt_secret_name)
        self._authorizers: dict[str, authorizers.HttpLambdaAuthorizer] = {}

    def for_function(self, fn: FunctionPlan) -> authorizers.HttpLambdaAuthorizer | None:
        kind: AuthorizerKind = fn.authorizer
        if kind == "none":
            return None
        name = "metered" if kind == "metered" else f"cached-{fn.auth}"
        if name not in self._authorizers:
            if kind == "metered":
                identity: list[str] = []
                ttl = Duration.seconds(0)
            else:
                identity = [f"$request.header.{CREDENTIAL_HEADERS[fn.auth]}", "$context.routeKey"]
                ttl = Duration.seconds(AUTH_CACHE_TTL_S)
            self._authorizers[name] = authorizers.HttpLambdaAuthorizer(
                name, self.lambda_.function, authorizer_name=name, identity_source=identity,
                response_types=[authorizers.HttpLambdaResponseType.SIMPLE], results_cache_ttl=ttl)
        return self._authorizers[name]
