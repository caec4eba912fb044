"""One Lambda function the Flux way: its own role, its own log group, nothing granted by default.

CDK's default Lambda role carries the ``AWSLambdaBasicExecutionRole`` managed
policy, which may write to *any* log group. Here each function gets a role that
may write only to its own log group (retention from the project, removal policy
from the stage), and every other permission is added by the construct that owns
the resource, with the narrowest action list that the code behind it uses.

Every function has reserved concurrency (infra/plan.py says how much and why).

A function in a VPC does not get the managed ``AWSLambdaVPCAccessExecutionRole``
either: its ``logs:*`` actions are on ``"*"``. Lambda uses the execution role to
create, describe and delete the function's network interfaces (and assign their
addresses); :func:`eni_statements` grants exactly those calls:

* ``ec2:DescribeNetworkInterfaces`` and ``ec2:DescribeSubnets`` stay on ``"*"``:
  EC2 Describe calls support no resource-level permissions, and Lambda's
  documentation says DescribeNetworkInterfaces works only when allowed on all
  resources. They read metadata, no data.
* ``ec2:CreateNetworkInterface``, ``ec2:DeleteNetworkInterface``,
  ``ec2:AssignPrivateIpAddresses`` and ``ec2:UnassignPrivateIpAddresses`` are
  limited to network interfaces, subnets and security groups of this account and
  region, and by the ``ec2:Vpc`` condition to the stack's own VPC, so the role
  cannot create or delete interfaces anywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.packaging import LAMBDA_PYTHON

ENI_DESCRIBE_ACTIONS = ("ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets")
ENI_MANAGE_ACTIONS = ("ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses",
                      "ec2:UnassignPrivateIpAddresses")
ENI_RESOURCE_TYPES = ("network-interface", "subnet", "security-group")
APP_SUBNETS = "app"  # the VPC subnet group of the Lambdas (infra/constructs/database.py makes it)
RUNTIME = {"3.12": lambda_.Runtime.PYTHON_3_12, "3.13": lambda_.Runtime.PYTHON_3_13}[LAMBDA_PYTHON]


_RETENTION_STEPS = (
    (1, "ONE_DAY"), (3, "THREE_DAYS"), (5, "FIVE_DAYS"), (7, "ONE_WEEK"), (14, "TWO_WEEKS"), (30, "ONE_MONTH"),
    (60, "TWO_MONTHS"), (90, "THREE_MONTHS"), (120, "FOUR_MONTHS"), (150, "FIVE_MONTHS"), (180, "SIX_MONTHS"),
    (365, "ONE_YEAR"), (400, "THIRTEEN_MONTHS"), (545, "EIGHTEEN_MONTHS"), (731, "TWO_YEARS"),
    (1096, "THREE_YEARS"), (1827, "FIVE_YEARS"), (2192, "SIX_YEARS"), (2557, "SEVEN_YEARS"),
    (2922, "EIGHT_YEARS"), (3288, "NINE_YEARS"), (3653, "TEN_YEARS"),
)


def eni_statements(scope: Construct, vpc: ec2.IVpc) -> list[iam.PolicyStatement]:
    """The network-interface calls Lambda makes with a VPC function's role (see the module docstring)."""
    stack = Stack.of(scope)
    vpc_arn = stack.format_arn(service="ec2", resource="vpc", resource_name=vpc.vpc_id,
                               arn_format=ArnFormat.SLASH_RESOURCE_NAME)
    resources = [stack.format_arn(service="ec2", resource=kind, resource_name="*",
                                  arn_format=ArnFormat.SLASH_RESOURCE_NAME) for kind in ENI_RESOURCE_TYPES]
    return [
        iam.PolicyStatement(actions=list(ENI_DESCRIBE_ACTIONS), resources=["*"]),
        iam.PolicyStatement(actions=list(ENI_MANAGE_ACTIONS), resources=resources,
                            conditions={"ArnEquals": {"ec2:Vpc": vpc_arn}}),
    ]


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
                 reserved_concurrency: int, layers: Sequence[lambda_.ILayerVersion] = (), vpc: ec2.IVpc | None = None,
                 security_groups: Sequence[ec2.ISecurityGroup] = ()) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention(retention_days),
                                       removal_policy=removal_policy)
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                             description=f"{description}: least privilege, granted per resource")
        self.log_group.grant_write(self.role)
        if vpc is not None:
            for statement in eni_statements(self, vpc):
                self.role.add_to_principal_policy(statement)
        self.function = lambda_.Function(
            self, "Function", runtime=RUNTIME, architecture=architecture, code=code, handler=handler,
            environment=dict(environment), timeout=Duration.seconds(timeout_s), memory_size=memory_mb,
            description=description, role=self.role, log_group=self.log_group, layers=list(layers),
            logging_format=lambda_.LoggingFormat.JSON, reserved_concurrent_executions=reserved_concurrency,
            vpc=vpc, vpc_subnets=ec2.SubnetSelection(subnet_group_name=APP_SUBNETS) if vpc else None,
            security_groups=list(security_groups) if vpc else None,
        )
