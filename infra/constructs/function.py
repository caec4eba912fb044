"""One Lambda function the Flux way: its own role, its own log group, nothing granted by default.

CDK's default Lambda role carries the ``AWSLambdaBasicExecutionRole`` managed
policy, which may write to *any* log group. Here each function gets a role that
may write only to its own log group (retention from the project, removal policy
from the stage), and every other permission is added by the construct that owns
the resource, with the narrowest action list that the code behind it uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.packaging import LAMBDA_PYTHON

VPC_ACCESS_POLICY = "service-role/AWSLambdaVPCAccessExecutionRole"
RUNTIME = {"3.12": lambda_.Runtime.PYTHON_3_12, "3.13": lambda_.Runtime.PYTHON_3_13}[LAMBDA_PYTHON]


_RETENTION_STEPS = (
    (1, "ONE_DAY"), (3, "THREE_DAYS"), (5, "FIVE_DAYS"), (7, "ONE_WEEK"), (14, "TWO_WEEKS"), (30, "ONE_MONTH"),
    (60, "TWO_MONTHS"), (90, "THREE_MONTHS"), (120, "FOUR_MONTHS"), (150, "FIVE_MONTHS"), (180, "SIX_MONTHS"),
    (365, "ONE_YEAR"), (400, "THIRTEEN_MONTHS"), (545, "EIGHTEEN_MONTHS"), (731, "TWO_YEARS"),
    (1096, "THREE_YEARS"), (1827, "FIVE_YEARS"), (2192, "SIX_YEARS"), (2557, "SEVEN_YEARS"),
    (2922, "EIGHT_YEARS"), (3288, "NINE_YEARS"), (3653, "TEN_YEARS"),
)


def log_retention(days: int) -> logs.RetentionDays:
    """The shortest CloudWatch retention that keeps ``days`` (CloudWatch only offers fixed steps)."""
    for value, name in _RETENTION_STEPS:
        if value >= days:
            return logs.RetentionDays[name]
    return logs.RetentionDays[_RETENTION_STEPS[-1][1]]


class FluxFunction(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, code: lambda_.Code, handler: str,
                 environment: Mapping[str, str], timeout_s: int, memory_mb: int, description: str,
                 architecture: lambda_.Architecture, retention_days: int, removal_policy: RemovalPolicy,
                 layers: Sequence[lambda_.ILayerVersion] = (), vpc: ec2.IVpc | None = None,
                 security_groups: Sequence[ec2.ISecurityGroup] = ()) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention(retention_days),
                                       removal_policy=removal_policy)
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                             description=f"{description}: least privilege, granted per resource")
        self.log_group.grant_write(self.role)
        if vpc is not None:
            # ENI management for a VPC function; AWS's own policy, because these EC2 calls take no resource ARN
            self.role.add_managed_policy(iam.ManagedPolicy.from_aws_managed_policy_name(VPC_ACCESS_POLICY))
        self.function = lambda_.Function(
            self, "Function", runtime=RUNTIME, architecture=architecture, code=code, handler=handler,
            environment=dict(environment), timeout=Duration.seconds(timeout_s), memory_size=memory_mb,
            description=description, role=self.role, log_group=self.log_group, layers=list(layers),
            logging_format=lambda_.LoggingFormat.JSON,
            vpc=vpc, vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS) if vpc else None,
            security_groups=list(security_groups) if vpc else None,
        )
