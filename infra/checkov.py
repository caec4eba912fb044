"""checkov's findings on the synthesized template that Flux accepts, each with its reason, in one place.

tests/infra/test_lint.py runs checkov (offline, ``--framework cloudformation``) on the
shop's dev and prod templates and fails on any finding not skipped here. A skip is
CloudFormation metadata on the one resource it is about (``Metadata: checkov: skip:
[{id, comment}]``), which is how checkov reads suppressions in a template; the
comment is the reason, as for the cdk-nag acknowledgements in infra/nag.py.
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import CfnResource
from aws_cdk import aws_lambda as lambda_
from constructs import IConstruct

from infra.stack import FluxStack

AWS_OWNED_KEYS = (
    "Encrypted at rest with the AWS-owned key of the service. A customer-managed KMS key adds $1/month per key, "
    "a charge per request and a key policy to keep in step with every role, for no control Flux uses (no "
    "cross-account access, no key-level audit requirement); a project that needs one can add it to the stack.")

# resource type → (check id, reason): checks whose premise does not hold for any resource of that type here.
BY_TYPE: dict[str, tuple[tuple[str, str], ...]] = {
    "AWS::Logs::LogGroup": (("CKV_AWS_158", AWS_OWNED_KEYS),),
    "AWS::DynamoDB::Table": (("CKV_AWS_119", AWS_OWNED_KEYS),),
    "AWS::SecretsManager::Secret": (("CKV_AWS_149", AWS_OWNED_KEYS + " Secrets Manager uses aws/secretsmanager."),),
    "AWS::SQS::Queue": (("CKV_AWS_27", "Encrypted with SSE-SQS (SqsManagedSseEnabled: true, the SQS-owned key) and "
                                       "TLS-only by queue policy; this check only recognises a KMS key."),),
    "AWS::Lambda::Function": (
        ("CKV_AWS_116", "No function is invoked asynchronously by Lambda: HTTP functions are called synchronously by "
                        "API Gateway (a DLQ applies only to asynchronous invokes), and async Flux functions read "
                        "their SQS queue, whose redrive policy moves failed jobs to the function's own DLQ."),
        ("CKV_AWS_173", "The environment holds names and ARNs only (tables, queues, the secret to read), no "
                        "secret values: credentials live in Secrets Manager and are read at run time. Lambda "
                        "encrypts the environment at rest with its service key."),
    ),
    "AWS::RDS::DBInstance": (
        ("CKV_AWS_118", "Enhanced monitoring bills an agent's OS metrics to CloudWatch Logs per instance; for one "
                        "Serverless v2 writer the cluster's CloudWatch metrics (ACU, connections, CPU) and the "
                        "exported PostgreSQL log answer the questions Flux asks."),
    ),
}
NOT_IN_VPC = ("CKV_AWS_117", "The authorizer and observability Lambdas reach only DynamoDB, Secrets Manager and the "
                             "Lambda API, never the database: outside the VPC they start without an ENI and need "
                             "no endpoint or NAT; the functions that reach Aurora run in its VPC.")


NO_PITR = ("CKV_AWS_28", "Dev profile: spans expire by TTL and rate-limit buckets refill, so a point-in-time restore "
                         "of this table recovers nothing a user needs; the API-key and job tables keep PITR, and "
                         "prod-profile stages have it on every table (infra/profile.py).")


def _skips(resource: CfnResource, without_pitr: set[str]) -> list[tuple[str, str]]:
    skips = list(BY_TYPE.get(resource.cfn_resource_type, ()))
    if resource.node.path in without_pitr:
        skips.append(NO_PITR)
    if resource.cfn_resource_type == "AWS::Lambda::Function" and not _in_vpc(resource):
        skips.append(NOT_IN_VPC)
    return skips


def _in_vpc(resource: CfnResource) -> bool:
    function = resource.node.scope
    return isinstance(function, lambda_.Function) and function.is_bound_to_vpc


def skip_accepted_findings(resources: Iterable[IConstruct], *, without_pitr: set[str] = frozenset()) -> None:
    """Write the ``checkov`` metadata on every CloudFormation resource among ``resources`` that has skips;
    ``without_pitr``: the construct paths of the tables that have point-in-time recovery off on purpose."""
    for construct in resources:
        if not isinstance(construct, CfnResource):
            continue
        skips = _skips(construct, without_pitr)
        if skips:
            construct.add_metadata("checkov", {"skip": [{"id": check, "comment": reason} for check, reason in skips]})


def apply_checkov(stack: FluxStack) -> None:
    without_pitr = set() if stack.plan.profile.pitr_everywhere else {
        table.node.default_child.node.path for table in (stack.tables.spans, stack.tables.rate_limits)}
    skip_accepted_findings(stack.node.find_all(), without_pitr=without_pitr)
