"""The DynamoDB tables: spans and logs, API-key hashes, rate-limit buckets and (with async functions) jobs.

Key schemas are not restated here: they come from the modules whose adapters read
and write the tables (functions/observability/dynamo_schema.py,
functions/gateway/dynamo_schema.py, functions/queue_consumer/dynamo_job_store.py),
so the stack and the code cannot drift apart. All tables are on demand, with the
AWS-owned encryption key. Point-in-time recovery is on every table in a prod-profile
stage; in a dev-profile stage only on the tables that hold user state (API keys and
jobs): spans expire by TTL and rate-limit buckets refill, so restoring them buys
nothing (infra/profile.py). Grants are per action
list (see :data:`SPAN_WRITER` and friends), never ``dynamodb:*``.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from constructs import Construct

from functions.gateway import dynamo_schema as gateway_schema
from functions.observability import dynamo_schema as span_schema
from functions.queue_consumer import dynamo_job_store as jobs_schema

# What each caller does with each table: the exact calls of the adapters that use it.
SPAN_WRITER = ("dynamodb:BatchWriteItem",)
SPAN_READER = ("dynamodb:Query", "dynamodb:GetItem")
SPAN_INDEXES = tuple(gsi["index_name"] for gsi in span_schema.SPANS_TABLE["global_secondary_indexes"])
KEY_CHECKER = ("dynamodb:GetItem", "dynamodb:UpdateItem")  # lookup + "last used" touch
BUCKET_WRITER = ("dynamodb:GetItem", "dynamodb:PutItem")  # GCRA: read, conditional put
JOB_ENQUEUER = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem")  # idempotency claim / release
JOB_SETTLER = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem")


_TYPES = {"S": dynamodb.AttributeType.STRING, "N": dynamodb.AttributeType.NUMBER, "B": dynamodb.AttributeType.BINARY}


def _attribute(spec: dict[str, str]) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=spec["name"], type=_TYPES[spec["type"]])


class FluxTables(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy,
                 with_jobs: bool, pitr_everywhere: bool = True) -> None:
        super().__init__(scope, construct_id)
        self._removal = removal_policy
        self._pitr_everywhere = pitr_everywhere
        self.spans = self._table("Spans", span_schema.SPANS_TABLE, user_state=False)
        for gsi in span_schema.SPANS_TABLE["global_secondary_indexes"]:
            self.spans.add_global_secondary_index(
                index_name=gsi["index_name"], partition_key=_attribute(gsi["partition_key"]),
                sort_key=_attribute(gsi["sort_key"]), projection_type=dynamodb.ProjectionType[gsi["projection"]])
        self.keys = self._table("ApiKeys", gateway_schema.KEYS_TABLE, user_state=True)
        self.rate_limits = self._table("RateLimits", gateway_schema.RATE_LIMIT_TABLE, user_state=False)
        self.jobs = self._table("Jobs", jobs_schema.JOBS_TABLE, user_state=True) if with_jobs else None

    def _table(self, construct_id: str, spec: dict[str, Any], *, user_state: bool) -> dynamodb.Table:
        sort_key = spec.get("sort_key")
        return dynamodb.Table(
            self, construct_id,
            partition_key=_attribute(spec["partition_key"]),
            sort_key=_attribute(sort_key) if sort_key else None,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=spec.get("time_to_live_attribute") or None,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=user_state or self._pitr_everywhere),
            removal_policy=self._removal,
        )


def grant(table: dynamodb.ITable, grantee: iam.IGrantable, actions: tuple[str, ...], *,
          indexes: tuple[str, ...] = ()) -> None:
    """Exactly ``actions`` on the table, and on the named indexes when the caller queries them (no ``index/*``)."""
    resources = [table.table_arn, *(f"{table.table_arn}/index/{name}" for name in indexes)]
    iam.Grant.add_to_principal(grantee=grantee, actions=list(actions), resource_arns=resources)
