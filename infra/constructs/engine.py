"""The engine Lambda: migrations, schema graph and index advice (functions/aws/entry_engine.py).

Queries never come here (each runtime Lambda runs the engine in-process); this
function serves the slow administrative actions: ``flux deploy`` and ``flux db
migrate --stage`` invoke its ``migrate`` action with the caller's own AWS
credentials, the observability Lambda its schema graph and advice. It exists only when the
stack has a database, ships the project's ``schema/`` folder, runs in the VPC
next to the database when one is provisioned, and its role reads the database
secrets (the owner's and the application role's, which it maintains) and nothing else.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from constructs import Construct

from functions.aws import names
from infra.constructs.database import FluxDatabase
from infra.constructs.function import FluxFunction
from infra.constructs.runtime_functions import PROJECT_IN_TASK, CodeAssets
from infra.plan import ENGINE_CONCURRENCY, StackPlan

TIMEOUT_S = 300  # a migration may rewrite a table
MEMORY_MB = 512


class EngineFunction(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, plan: StackPlan, code: CodeAssets,
                 database: FluxDatabase, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        self.lambda_ = FluxFunction(
            self, "Engine", code=code.runtime, handler=names.ENGINE_HANDLER,
            environment={
                **database.engine_environment(),
                names.SCHEMA_DIR: f"{PROJECT_IN_TASK}/schema",
                names.SLOW_QUERY_MS: str(plan.slow_query_ms),
                names.N_PLUS_ONE_THRESHOLD: str(plan.n_plus_one_threshold),
            },
            timeout_s=TIMEOUT_S, memory_mb=MEMORY_MB, architecture=code.architecture,
            description=f"Flux {plan.project}/{plan.stage}: engine (migrations, schema graph, index advice)",
            retention_days=plan.retention_days, removal_policy=removal_policy,
            reserved_concurrency=ENGINE_CONCURRENCY, vpc=database.vpc,
            security_groups=[database.lambda_security_group] if database.lambda_security_group else [])
        database.grant_migrate(self.lambda_.role)
