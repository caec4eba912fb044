"""The database the runtime and engine Lambdas reach, chosen by ``database`` in flux.json.

* ``provision: true`` — an Aurora Serverless v2 PostgreSQL cluster in isolated
  subnets of its own VPC, shaped by the stage profile (infra/profile.py): in prod
  reached through an RDS Proxy (TLS required) that pools the connections of many
  short-lived Lambda containers; in dev through the cluster endpoint (TLS required
  by Aurora PostgreSQL 17), scaling to 0 ACU when idle. The generated credentials
  live in Secrets Manager. The runtime and engine Lambdas run in the VPC's ``app``
  subnets and reach Secrets Manager and SQS through interface endpoints and
  DynamoDB through a gateway endpoint; a NAT gateway exists only when a function
  declares ``allow_net`` hosts. ``DATABASE_HOST`` tells them where to connect
  (the proxy, or the cluster endpoint) instead of the host written in the secret.
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
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from functions.aws import names
from infra.constructs.function import APP_SUBNETS, log_retention
from infra.plan import DatabasePlan
from infra.profile import VPC_AZS, StageProfile

PROXY_PORT = 5432
HTTPS_PORT = 443
INTERFACE_ENDPOINTS = {"SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
                       "Sqs": ec2.InterfaceVpcEndpointAwsService.SQS}
DATABASE_URL_PARAMETER = "DatabaseUrl"
_COMPLETE_SECRET_ARN = re.compile(r"-[A-Za-z0-9]{6}$")


class FluxDatabase(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, plan: DatabasePlan, project: str,
                 profile: StageProfile, proxy_name: str, cluster_name: str) -> None:
        super().__init__(scope, construct_id)
        self.mode = plan.mode
        self.secret: secretsmanager.ISecret | None = None     # the owner's: migrations (the engine) only
        self.app_secret: secretsmanager.Secret | None = None  # the application role's: what user code runs as
        self.vpc: ec2.Vpc | None = None
        self.lambda_security_group: ec2.SecurityGroup | None = None
        self.proxy: rds.DatabaseProxy | None = None
        self.cluster: rds.DatabaseCluster | None = None
        retain = profile.retain
        removal = _removal(profile)
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
            self._provision(project, profile, proxy_name, cluster_name)
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

    def _provision(self, project: str, profile: StageProfile, proxy_name: str, cluster_name: str) -> None:
        self.vpc = ec2.Vpc(self, "Vpc", max_azs=VPC_AZS, nat_gateways=profile.nat_gateways,
                           subnet_configuration=_subnets(with_nat=profile.nat_gateways > 0))
        self._flow_logs(profile)
        self.vpc.add_gateway_endpoint("DynamoDb", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB)
        self.lambda_security_group = ec2.SecurityGroup(
            self, "LambdaSg", vpc=self.vpc, allow_all_outbound=True,
            description="Flux runtime and engine Lambdas (egress: database, AWS APIs, allow_net hosts)")
        self._interface_endpoints()
        self.cluster = self._cluster(project, profile, cluster_name)
        self.secret = self.cluster.secret
        if profile.proxy:
            self._proxy(proxy_name)
        else:
            # No proxy: the Lambdas connect to the cluster endpoint itself (Aurora PostgreSQL 17 forces TLS).
            self.cluster.connections.allow_default_port_from(self.lambda_security_group,
                                                             "Flux Lambdas to the cluster")

    def _flow_logs(self, profile: StageProfile) -> None:
        """Flow logs: rejected traffic for the project's retention in dev (deleted with the stack), all traffic
        kept two years in prod."""
        assert self.vpc is not None
        group = logs.LogGroup(self, "FlowLogGroup", retention=log_retention(profile.log_retention_days),
                              removal_policy=_removal(profile))
        self.vpc.add_flow_log("FlowLogs", traffic_type=ec2.FlowLogTrafficType[profile.flow_log_traffic],
                              destination=ec2.FlowLogDestination.to_cloud_watch_logs(group))

    def _interface_endpoints(self) -> None:
        """Secrets Manager and SQS inside the VPC (private DNS: the SDKs' default hostnames resolve to them), so a
        cold start reaches its secrets and queues without a NAT gateway; HTTPS from the Lambdas only."""
        assert self.vpc is not None and self.lambda_security_group is not None
        endpoint_sg = ec2.SecurityGroup(self, "EndpointSg", vpc=self.vpc, allow_all_outbound=False,
                                        description="Secrets Manager and SQS endpoints: HTTPS from the Flux Lambdas")
        endpoint_sg.add_ingress_rule(self.lambda_security_group, ec2.Port.tcp(HTTPS_PORT),
                                     "Flux Lambdas to Secrets Manager and SQS")
        for name, service in INTERFACE_ENDPOINTS.items():
            self.vpc.add_interface_endpoint(name, service=service, private_dns_enabled=True, open=False,
                                            security_groups=[endpoint_sg],
                                            subnets=ec2.SubnetSelection(subnet_group_name=APP_SUBNETS))

    def _cluster(self, project: str, profile: StageProfile, cluster_name: str) -> rds.DatabaseCluster:
        assert self.vpc is not None
        retain = profile.retain
        # Made before the cluster, so the log export lands in a group with a retention (RDS would create one
        # that never expires); the fixed cluster identifier is what makes its name known at synth time.
        log_group = logs.LogGroup(self, "ClusterLogs", log_group_name=f"/aws/rds/cluster/{cluster_name}/postgresql",
                                  retention=log_retention(profile.log_retention_days),
                                  removal_policy=_removal(profile))
        cluster = rds.DatabaseCluster(
            self, "Cluster", cluster_identifier=cluster_name,
            engine=rds.DatabaseClusterEngine.aurora_postgres(version=rds.AuroraPostgresEngineVersion.VER_17_7),
            writer=rds.ClusterInstance.serverless_v2("Writer"),
            serverless_v2_min_capacity=profile.min_acu, serverless_v2_max_capacity=8,
            serverless_v2_auto_pause_duration=Duration.seconds(profile.auto_pause_s)
            if profile.auto_pause_s else None,
            vpc=self.vpc, vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            credentials=rds.Credentials.from_generated_secret("flux_admin"),
            default_database_name=_database_name(project),
            storage_encrypted=True, iam_authentication=True,
            cloudwatch_logs_exports=["postgresql"],
            backup=rds.BackupProps(retention=Duration.days(7)),
            deletion_protection=retain,
            removal_policy=RemovalPolicy.SNAPSHOT if retain else RemovalPolicy.DESTROY,
        )
        cluster.node.add_dependency(log_group)
        return cluster

    def _proxy(self, proxy_name: str) -> None:
        assert self.vpc is not None and self.cluster is not None and self.lambda_security_group is not None
        proxy_sg = ec2.SecurityGroup(self, "ProxySg", vpc=self.vpc, allow_all_outbound=False,
                                     description="RDS Proxy: from the Flux Lambdas only")
        self.proxy = self.cluster.add_proxy(
            # Proxy auth is per secret: a client logs in with the credentials of one of these.
            "Proxy", db_proxy_name=proxy_name,
            secrets=[self.cluster.secret, *([self.app_secret] if self.app_secret is not None else [])],
            vpc=self.vpc, vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
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
        elif self.cluster is not None and self.app_secret is not None:
            env[names.DATABASE_HOST] = self.cluster.cluster_endpoint.hostname
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


def _removal(profile: StageProfile) -> RemovalPolicy:
    return RemovalPolicy.RETAIN if profile.retain else RemovalPolicy.DESTROY


def _subnets(*, with_nat: bool) -> list[ec2.SubnetConfiguration]:
    """Public subnets (for the NAT gateways) only when a function needs the internet; otherwise the Lambdas'
    subnets are isolated and reach AWS through the VPC endpoints alone."""
    app = ec2.SubnetType.PRIVATE_WITH_EGRESS if with_nat else ec2.SubnetType.PRIVATE_ISOLATED
    return [
        *([ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24)] if with_nat
          else []),
        ec2.SubnetConfiguration(name=APP_SUBNETS, subnet_type=app, cidr_mask=22),
        ec2.SubnetConfiguration(name="data", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24),
    ]


def _database_name(project: str) -> str:
    """The database a provisioned cluster creates (and the application secret names)."""
    return re.sub(r"[^a-z0-9_]", "_", project.lower())
