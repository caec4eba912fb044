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

**Two secrets, two roles** (DESIGN §7). The secret above is the owner's (for a provisioned
cluster, the master user's): only the engine Lambda reads it, to run migrations. User code
connects as the application role (``database.app_role``, ``flux_app`` by default), whose
secret this stack generates (``username`` and a generated ``password``; for a provisioned
cluster also ``dbname``; never a host: the runtime connects to ``DATABASE_HOST``, the proxy).
The runtime Lambdas' ``DATABASE_SECRET_ARN`` names it and their roles may read only it
(:meth:`FluxDatabase.grant_connect`); the engine reads both (:meth:`FluxDatabase.grant_migrate`)
and each migrate creates the role and sets its password from the secret. RDS Proxy
authenticates clients per secret, so the proxy lists both. For ``url`` and ``secret_arn``
the database's address is unknown at synth time: the engine may also write host, port and
database name (never the owner's credentials) into the application secret on migrate. With
``"app_role": false`` there is one secret, read by both, as the owner.
"""

from __future__ import annotations

import json
import re

from aws_cdk import CfnParameter, Duration, RemovalPolicy, SecretValue, Token
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
        self.secret: secretsmanager.ISecret | None = None     # the owner's: migrations (the engine) only
        self.app_secret: secretsmanager.Secret | None = None  # the application role's: what user code runs as
        self.vpc: ec2.Vpc | None = None
        self.lambda_security_group: ec2.SecurityGroup | None = None
        self.proxy: rds.DatabaseProxy | None = None
        self.cluster: rds.DatabaseCluster | None = None
        removal = RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY
        if plan.mode != "none" and plan.app_role is not None:
            document = {"username": plan.app_role}
            if plan.mode == "provision":
                document["dbname"] = _database_name(project)
            self.app_secret = secretsmanager.Secret(
                self, "AppSecret", description=f"Flux {project}: the application database role user code runs as "
                                                 "(DML only; created and kept by migrations)",
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    secret_string_template=json.dumps(document), generate_string_key="password",
                    exclude_punctuation=True, password_length=40),
                removal_policy=removal)
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
            default_database_name=_database_name(project),
            storage_encrypted=True, iam_authentication=True,
            cloudwatch_logs_exports=["postgresql"],
            backup=rds.BackupProps(retention=Duration.days(7)),
            deletion_protection=retain,
            removal_policy=RemovalPolicy.SNAPSHOT if retain else RemovalPolicy.DESTROY,
        )
        self.secret = self.cluster.secret
        self.proxy = self.cluster.add_proxy(
            # Proxy auth is per secret: a client logs in with the credentials of one of these.
            "Proxy", db_proxy_name=proxy_name,
            secrets=[self.cluster.secret, *([self.app_secret] if self.app_secret is not None else [])],
            vpc=self.vpc, vpc_subnets=data,
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
        """What a runtime Lambda needs to reach the database as the application role."""
        if self.secret is None:
            return {}
        user_secret = self.app_secret if self.app_secret is not None else self.secret
        env = {names.DATABASE_SECRET_ARN: user_secret.secret_arn}
        if self.proxy is not None:
            env[names.DATABASE_HOST] = self.proxy.endpoint
        if self.cluster is not None and self.app_secret is not None:
            # The master secret carries the port (its target attachment adds it); the application secret does not.
            env[names.DATABASE_PORT] = Token.as_string(self.cluster.cluster_endpoint.port)
        return env

    def engine_environment(self) -> dict[str, str]:
        """The engine Lambda's: the owner's secret (migrations) and the application role's (to maintain it)."""
        if self.secret is None:
            return {}
        env = {names.DATABASE_SECRET_ARN: self.secret.secret_arn}
        if self.app_secret is not None:
            env[names.DATABASE_APP_SECRET_ARN] = self.app_secret.secret_arn
        if self.proxy is not None:
            env[names.DATABASE_HOST] = self.proxy.endpoint
        return env

    def grant_connect(self, grantee: iam.IGrantable) -> None:
        """A runtime role: read the application role's secret only (the owner's when the project opted out)."""
        user_secret = self.app_secret if self.app_secret is not None else self.secret
        if user_secret is not None:
            user_secret.grant_read(grantee)

    def grant_migrate(self, grantee: iam.IGrantable) -> None:
        """The engine's role: read both secrets; for url/secret_arn also write the database's address into the
        application secret (PutSecretValue on that one secret), which the runtime cannot learn otherwise."""
        if self.secret is None:
            return
        self.secret.grant_read(grantee)
        if self.app_secret is not None:
            self.app_secret.grant_read(grantee)
            if self.mode in ("url", "secret_arn"):
                iam.Grant.add_to_principal(grantee=grantee, actions=["secretsmanager:PutSecretValue"],
                                           resource_arns=[self.app_secret.secret_arn])


def _database_name(project: str) -> str:
    """The database a provisioned cluster creates (and the application secret names)."""
    return re.sub(r"[^a-z0-9_]", "_", project.lower())
