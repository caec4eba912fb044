"""The database the runtime and engine Lambdas reach, chosen by ``database`` in flux.json.

* ``provision: true`` — an Aurora Serverless v2 PostgreSQL cluster in isolated
  subnets of its own VPC, reached only through an RDS Proxy (TLS required) that
  pools the connections of many short-lived Lambda containers. The generated
  credentials live in Secrets Manager. The runtime and engine Lambdas run in the
  VPC's private subnets (a NAT gateway gives ``ctx.fetch`` its way out; DynamoDB
  goes through a gateway endpoint). ``DATABASE_HOST`` tells them to connect to the
  proxy instead of the cluster endpoint written in the secret.
* ``secret_arn`` — an existing secret (RDS JSON or ``{"url": ...}``), only read.
* ``url`` — the URL is passed at deploy time as the NoEcho parameter
  ``DatabaseUrl`` and stored as ``{"url": ...}`` in a secret this stack owns, so it
  never appears in the template or the synthesized cloud assembly.

Only the roles given to :meth:`FluxDatabase.grant_connect` may read the secret.
"""

from __future__ import annotations

import re

from aws_cdk import CfnParameter, Duration, RemovalPolicy, SecretValue
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from functions.aws import names
from infra.plan import DatabasePlan

PROXY_PORT = 5432
DATABASE_URL_PARAMETER = "DatabaseUrl"
_COMPLETE_SECRET_ARN = re.compile(r"-[A-Za-z0-9]{6}$")


class FluxDatabase(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, plan: DatabasePlan, project: str,
                 retain: bool, proxy_name: str) -> None:
        super().__init__(scope, construct_id)
        self.mode = plan.mode
        self.secret: secretsmanager.ISecret | None = None
        self.vpc: ec2.Vpc | None = None
        self.lambda_security_group: ec2.SecurityGroup | None = None
        self.proxy: rds.DatabaseProxy | None = None
        self.cluster: rds.DatabaseCluster | None = None
        if plan.mode == "provision":
            self._provision(project, retain, proxy_name)
        elif plan.mode == "secret_arn":
            arn = plan.secret_arn or ""
            if _COMPLETE_SECRET_ARN.search(arn):
                self.secret = secretsmanager.Secret.from_secret_complete_arn(self, "Existing", arn)
            else:
                self.secret = secretsmanager.Secret.from_secret_partial_arn(self, "Existing", arn)
        elif plan.mode == "url":
            url = CfnParameter(self, DATABASE_URL_PARAMETER, type="String", no_echo=True, min_length=12,
                               description="postgresql:// URL of the database (flux deploy passes database.url)")
            url.override_logical_id(DATABASE_URL_PARAMETER)
            self.secret = secretsmanager.Secret(
                self, "UrlSecret", description=f"Flux {project}: database URL (from database.url at deploy time)",
                secret_object_value={"url": SecretValue.cfn_parameter(url)},
                removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY)

    def _provision(self, project: str, retain: bool, proxy_name: str) -> None:
        self.vpc = ec2.Vpc(self, "Vpc", max_azs=2, nat_gateways=1, subnet_configuration=[
            ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
            ec2.SubnetConfiguration(name="app", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22),
            ec2.SubnetConfiguration(name="data", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24),
        ])
        self.vpc.add_flow_log("FlowLogs")
        self.vpc.add_gateway_endpoint("DynamoDb", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB)
        self.lambda_security_group = ec2.SecurityGroup(
            self, "LambdaSg", vpc=self.vpc, allow_all_outbound=True,
            description="Flux runtime and engine Lambdas (egress: proxy, AWS APIs, allow_net hosts)")
        proxy_sg = ec2.SecurityGroup(self, "ProxySg", vpc=self.vpc, allow_all_outbound=False,
                                     description="RDS Proxy: from the Flux Lambdas only")
        data = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        self.cluster = rds.DatabaseCluster(
            self, "Cluster",
            engine=rds.DatabaseClusterEngine.aurora_postgres(version=rds.AuroraPostgresEngineVersion.VER_17_7),
            writer=rds.ClusterInstance.serverless_v2("Writer"),
            serverless_v2_min_capacity=0.5, serverless_v2_max_capacity=8,
            vpc=self.vpc, vpc_subnets=data,
            credentials=rds.Credentials.from_generated_secret("flux_admin"),
            default_database_name=re.sub(r"[^a-z0-9_]", "_", project.lower()),
            storage_encrypted=True, iam_authentication=True,
            cloudwatch_logs_exports=["postgresql"],
            backup=rds.BackupProps(retention=Duration.days(7)),
            deletion_protection=retain,
            removal_policy=RemovalPolicy.SNAPSHOT if retain else RemovalPolicy.DESTROY,
        )
        self.secret = self.cluster.secret
        self.proxy = self.cluster.add_proxy(
            "Proxy", db_proxy_name=proxy_name, secrets=[self.cluster.secret], vpc=self.vpc, vpc_subnets=data,
            security_groups=[proxy_sg],
            require_tls=True, borrow_timeout=Duration.seconds(30))
        self.cluster.connections.allow_default_port_from(proxy_sg, "RDS Proxy to the cluster")
        proxy_sg.add_egress_rule(ec2.Peer.ipv4(self.vpc.vpc_cidr_block), ec2.Port.tcp(PROXY_PORT),
                                 "RDS Proxy to the cluster")
        proxy_sg.add_ingress_rule(self.lambda_security_group, ec2.Port.tcp(PROXY_PORT), "Flux Lambdas to the proxy")

    @property
    def enabled(self) -> bool:
        return self.secret is not None

    def environment(self) -> dict[str, str]:
        """What a Lambda that talks to the database needs in its environment."""
        if self.secret is None:
            return {}
        env = {names.DATABASE_SECRET_ARN: self.secret.secret_arn}
        if self.proxy is not None:
            env[names.DATABASE_HOST] = self.proxy.endpoint
        return env

    def grant_connect(self, grantee: iam.IGrantable) -> None:
        """Read the credentials (GetSecretValue, DescribeSecret on this one secret)."""
        if self.secret is not None:
            self.secret.grant_read(grantee)
