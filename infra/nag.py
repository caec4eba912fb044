"""cdk-nag AwsSolutions checks on every synth, and every acknowledged finding with its reason.

cdk-nag 3 is a CDK policy-validation plugin: a synth with an unacknowledged
finding fails and lists it. Acknowledgements go through ``Validations.of(x).acknowledge``
on the narrowest construct that causes them, and IAM wildcard findings name the
exact resource they accept (cdk-nag 3 has no rule-wide wildcard acknowledgement).
Everything the stack does about a finding is in this one file so it can be
reviewed in one read.
"""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from infra.constructs.function import ENI_RESOURCE_TYPES
from infra.stack import FluxStack

RUNTIME_REASON = (
    "python3.12 on purpose: Flux is developed and tested on Python 3.11, and 3.12 is the nearest Lambda runtime on "
    "Amazon Linux 2023, whose glibc (2.34) the deno binary of the layer needs (python3.11 runs on Amazon Linux 2, "
    "glibc 2.26). Moving to a newer Python is a deliberate upgrade with its own test run, not a template change."
)


def _ack(construct: IConstruct, rule: str, reason: str) -> None:
    cdk.Validations.of(construct).acknowledge(cdk.Acknowledgment(id=rule, reason=reason))


def apply_nag(app: cdk.App, stack: FluxStack) -> None:
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    acknowledge_findings(stack)


def acknowledge_findings(stack: FluxStack) -> None:
    plan = stack.plan
    lambdas = [*stack.runtime.http.values(), *stack.runtime.workers.values(), stack.authorizer.lambda_,
               stack.observability.lambda_]
    if stack.engine is not None:
        lambdas.append(stack.engine.lambda_)
    for made in lambdas:
        _ack(made.function, "AwsSolutions-L1", RUNTIME_REASON)
        if made.function.is_bound_to_vpc:
            _ack(made.role, "AwsSolutions-IAM5[Resource::*]",
                 "ec2:DescribeNetworkInterfaces and ec2:DescribeSubnets only: Lambda describes its network interfaces "
                 "with the execution role, EC2 Describe calls have no resource-level permissions, and they read "
                 "metadata, no data.")
            for kind in ENI_RESOURCE_TYPES:
                _ack(made.role, f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:"
                                f"<AWS::AccountId>:{kind}/*]",
                     "Lambda creates and deletes the function's network interfaces with the execution role; their ids "
                     "are not known before they exist, so the grant is on this account and region's interfaces, "
                     "subnets and security groups, limited by the ec2:Vpc condition to the stack's own VPC.")

    public_reason = {
        "none": "flux.json declares this function public (\"auth\": \"none\") and sets no rate limit, so no "
                "authorizer runs; the runtime validates the input and answers errors with the standard body.",
    }
    for fn in plan.routed_functions:
        if fn.authorizer == "none":
            _ack(stack.api.routes[fn.name], "AwsSolutions-APIG4", public_reason["none"])
    for route_id in ("route-flux-dashboard", "route-flux-api"):
        _ack(stack.api.routes[route_id], "AwsSolutions-APIG4",
             "The observability Lambda checks an admin API key itself against the key table on every /_flux/api "
             "call (fail closed); the dashboard's static files hold no data and must load without a key so the "
             "page can ask for one. The gateway authorizer only knows function routes.")
    _ack(stack.api.routes["route-default"], "AwsSolutions-APIG4",
         "$default only answers Flux's 404 body (route_not_found with a request id) for paths that match no "
         "function; nothing behind it reads or changes data.")

    if not plan.profile.pitr_everywhere:
        for table in (stack.tables.spans, stack.tables.rate_limits):
            _ack(table, "AwsSolutions-DDB3",
                 f"stage {plan.stage!r} has the dev profile: spans expire by TTL and rate-limit buckets refill, so a "
                 "point-in-time restore of them recovers nothing a user needs; the API-key and job tables keep PITR, "
                 "and prod-profile stages have it on every table (infra/profile.py).")

    database = stack.database
    if database.cluster is not None:
        if not plan.retain_data:
            _ack(database.cluster, "AwsSolutions-RDS10",
                 f"stage {plan.stage!r} is disposable: `flux destroy` must be able to delete it. The prod stage "
                 "has deletion protection on (and a final snapshot on delete).")
        if database.cluster.secret is not None:
            # cluster.secret is the target attachment; the finding is on the generated secret itself
            _ack(database.cluster.node.find_child("Secret"), "AwsSolutions-SMG4",
                 "Runtime containers read the credentials once per cold start and keep pooled connections; a "
                 "rotation would make their reconnects fail until every warm container is recycled. Rotate by "
                 "hand (then redeploy) until the runtime re-reads the secret on an authentication failure.")
    if database.app_secret is not None:
        _ack(database.app_secret, "AwsSolutions-SMG4",
             "The application role's password is set on the role by the engine's migrate, not by a rotation Lambda; "
             "rotate it by putting a new password in this secret, then `flux db migrate --stage <s>` (warm runtime "
             "containers keep their pooled connections; new ones log in with the new password).")
    if database.mode == "url" and database.secret is not None:
        _ack(database.secret, "AwsSolutions-SMG4",
             "This secret holds a URL of a database Flux does not manage: its password is rotated where that "
             "database lives, then redeployed with `flux deploy` (which passes database.url again).")
