"""The observability API and dashboard Lambda (functions/aws/entry_observability.py).

It serves ``/_flux/api/*`` (traces, logs, suggestions; admin API key required) and
the dashboard's static files under ``/_flux/``. No API Gateway authorizer sits in
front of it: the gateway authorizer only knows function routes (anything else is a
hard deny, a bare 403), and the dashboard page must load without a key so it can
ask for one. The Lambda checks the admin key itself against the key table, fail
closed (functions/observability/auth.py).

Its role reads spans (table and its recent-traces index) and, narrowly, the key
table: GetItem to check a presented admin key and UpdateItem for its "last used"
mark, the same two calls the authorizer makes. That is the one exception to "only
the authorizer reads the key table".
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from functions.aws import names
from infra.constructs.function import FluxFunction
from infra.constructs.runtime_functions import CodeAssets
from infra.constructs.tables import KEY_CHECKER, SPAN_INDEXES, SPAN_READER, FluxTables, grant
from infra.plan import OBSERVABILITY_CONCURRENCY, SPANS_SHARDS, StackPlan

API_PREFIX = "/_flux/api"
DASHBOARD_PATH = "/_flux"
TIMEOUT_S = 29  # under API Gateway's 30 s integration limit
MEMORY_MB = 1024  # trace assembly and suggestion scans are CPU-bound


class ObservabilityFunction(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, plan: StackPlan, code: CodeAssets,
                 tables: FluxTables, removal_policy: RemovalPolicy,
                 engine: lambda_.IFunction | None = None) -> None:
        super().__init__(scope, construct_id)
        advice = {names.ENGINE_FUNCTION: engine.function_name} if engine is not None else {}
        self.lambda_ = FluxFunction(
            self, "Api", code=code.control, handler=names.OBSERVABILITY_HANDLER,
            environment={
                names.SPANS_TABLE: tables.spans.table_name,
                names.KEYS_TABLE: tables.keys.table_name,
                names.SPANS_SHARDS: str(SPANS_SHARDS),
                names.SLOW_QUERY_MS: str(plan.slow_query_ms),
                names.N_PLUS_ONE_THRESHOLD: str(plan.n_plus_one_threshold),
                names.RETENTION_DAYS: str(plan.retention_days),
                names.API_PREFIX: API_PREFIX,
                names.DASHBOARD_PATH: DASHBOARD_PATH,
                **advice,
            },
            timeout_s=TIMEOUT_S, memory_mb=MEMORY_MB, architecture=code.architecture,
            description=f"Flux {plan.project}/{plan.stage}: observability API and dashboard",
            retention_days=plan.retention_days, removal_policy=removal_policy,
            reserved_concurrency=OBSERVABILITY_CONCURRENCY)
        grant(tables.spans, self.lambda_.role, SPAN_READER, indexes=SPAN_INDEXES)
        grant(tables.keys, self.lambda_.role, KEY_CHECKER)
        if engine is not None:
            # Exactly the function (grant_invoke would add "<arn>:*" for every version and alias).
            self.lambda_.role.add_to_principal_policy(iam.PolicyStatement(
                actions=["lambda:InvokeFunction"], resources=[engine.function_arn]))
