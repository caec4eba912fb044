"""The REQUEST Lambda authorizer in front of function routes (functions/aws/entry_authorizer.py).

One Lambda, one API Gateway authorizer object, on every route whose function
authenticates or is rate limited (infra/plan.py). Its results are never cached and
it has no identity sources: every request is authenticated and counted, an API key
works in ``x-api-key`` and in ``Authorization: Bearer``, a request without a
credential still gets Flux's own 401 body (API Gateway would answer a missing
identity source with a bare one), and a revoked key stops working at once
(functions/gateway/authorizer.py explains why). Simple responses, payload format 2.0.

The role may read and touch API-key records, read and write rate-limit buckets and,
when ``auth.jwt.secret_name`` is set, read that one secret. Nothing else: in
particular not the database secret.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from constructs import Construct

from functions.aws import names
from infra.constructs.function import FluxFunction
from infra.constructs.runtime_functions import PROJECT_IN_TASK, CodeAssets
from infra.constructs.secrets import ProjectSecrets
from infra.constructs.tables import BUCKET_WRITER, KEY_CHECKER, FluxTables, grant
from infra.plan import AUTHORIZER_CONCURRENCY, FunctionPlan, StackPlan

AUTHORIZER_NAME = "flux-request"
TIMEOUT_S = 10  # API Gateway gives an authorizer 10 s at most
MEMORY_MB = 512  # more memory is more CPU: the cold start sits in front of a user's request


class FluxAuthorizer(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, plan: StackPlan, code: CodeAssets,
                 tables: FluxTables, secrets: ProjectSecrets, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        self.lambda_ = FluxFunction(
            self, "Authorizer", code=code.control, handler=names.AUTHORIZER_HANDLER,
            environment={
                names.PROJECT_DIR: PROJECT_IN_TASK,
                names.KEYS_TABLE: tables.keys.table_name,
                names.RATE_LIMIT_TABLE: tables.rate_limits.table_name,
                names.SECRETS_PREFIX: plan.secrets_prefix,
            },
            timeout_s=TIMEOUT_S, memory_mb=MEMORY_MB, architecture=code.architecture,
            description=f"Flux {plan.project}/{plan.stage}: authorizer (API keys, JWT, rate limits)",
            retention_days=plan.retention_days, removal_policy=removal_policy,
            reserved_concurrency=AUTHORIZER_CONCURRENCY)
        grant(tables.keys, self.lambda_.role, KEY_CHECKER)
        grant(tables.rate_limits, self.lambda_.role, BUCKET_WRITER)
        if plan.jwt_secret_name:
            secrets.grant_read_one(self.lambda_.role, plan.jwt_secret_name)
        self._authorizer: authorizers.HttpLambdaAuthorizer | None = None

    def for_function(self, fn: FunctionPlan) -> authorizers.HttpLambdaAuthorizer | None:
        if fn.authorizer == "none":
            return None
        if self._authorizer is None:
            self._authorizer = authorizers.HttpLambdaAuthorizer(
                "request", self.lambda_.function, authorizer_name=AUTHORIZER_NAME, identity_source=[],
                response_types=[authorizers.HttpLambdaResponseType.SIMPLE], results_cache_ttl=Duration.seconds(0))
        return self._authorizer
