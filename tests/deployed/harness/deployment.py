"""One emulated deployment of a synthesized stack: what ``cdk deploy`` would leave running in an account.

Order, as CloudFormation would create the resources: DynamoDB tables, SQS queues, secrets (and,
before them, the secrets that already exist in the account, as ``database.secret_arn`` expects);
the database (the cluster, its secret's connection details, the RDS Proxy front); every
Lambda function (names, ARNs, assets, layers); the HTTP API; the SQS event source
mappings. The stack's outputs are then written where ``cdk deploy --outputs-file`` puts
them and served by an emulated CloudFormation ``DescribeStacks``, so
the CLI can find them the way it would in AWS.

Endpoints the SDKs use (in the Lambdas and in CLI subprocesses): ``AWS_ENDPOINT_URL`` →
moto, ``AWS_ENDPOINT_URL_LAMBDA`` → the emulated Invoke API,
``AWS_ENDPOINT_URL_CLOUDFORMATION`` → the emulated ``DescribeStacks``.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

from tests.deployed.harness import aws_services as aws
from tests.deployed.harness.apigw_http import HttpApi, HttpApiModel
from tests.deployed.harness.lambda_service import CloudFormationStacks, InvokeApi, LambdaService, function_specs
from tests.deployed.harness.postgres import ClusterServer
from tests.deployed.harness.rds_proxy import RdsProxy
from tests.deployed.harness.runtime_image import RuntimeImage, build_runtime_image
from tests.deployed.harness.sqs_esm import EventSourceMapping, mappings_of
from tests.deployed.harness.template import Stack, UnresolvedReference

_DYNAMIC_SECRET = re.compile(r"\{\{resolve:secretsmanager:(.+?):SecretString:([^:]*)::\}\}")
# With an RDS Proxy the cluster endpoint is unreachable (nothing listens here): only the proxy path works.
# Without one (a dev-profile stage) the cluster endpoint is a TLS-required front on 127.0.0.1.
CLUSTER_HOST = "127.0.0.2"


class Deployment:
    def __init__(self, assembly: Path, stack_name: str, workdir: Path, *, parameters: dict[str, str] | None = None,
                 image: RuntimeImage | None = None, external_database_port: int | None = None,
                 existing_secrets: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        # Secrets that exist in the account before the stack (``database.secret_arn``): name → SecretString.
        self._existing_secrets = dict(existing_secrets or {})
        workdir.mkdir(parents=True, exist_ok=True)
        self.stack = Stack.load(assembly, stack_name, parameters)
        self._closers: list[Any] = []
        try:
            self._deploy(image or build_runtime_image())
        except BaseException:
            self.close()
            raise

    def _deploy(self, image: RuntimeImage) -> None:
        stack = self.stack
        self.moto = aws.MotoServer(self.workdir / "moto.log")
        self._closers.append(self.moto.stop)
        aws.create_tables(stack, self.moto)
        aws.create_queues(stack, self.moto)
        aws.create_secrets(stack, self.moto)
        for name, value in self._existing_secrets.items():
            self.client("secretsmanager").create_secret(Name=name, SecretString=value)
        self.cluster: ClusterServer | None = None
        self.proxy: RdsProxy | None = None            # the stack's RDS Proxy
        self.database_front: RdsProxy | None = None   # what the Lambdas connect to: the proxy or the cluster endpoint
        self._database()
        aws.attach_secret_targets(stack, self.moto)
        self._proxy_users()
        self.endpoints: dict[str, str] = {"AWS_ENDPOINT_URL": self.moto.url}
        specs = function_specs(stack)
        self.lambdas = LambdaService(stack, specs, image, self.workdir, endpoints=self.endpoints)
        self._closers.append(self.lambdas.close)
        self.stacks = CloudFormationStacks(stack.name, {})
        self.invoke_api = InvokeApi(self.lambdas, self.stacks)
        self._closers.append(self.invoke_api.close)
        self.endpoints["AWS_ENDPOINT_URL_LAMBDA"] = self.invoke_api.url
        self.endpoints["AWS_ENDPOINT_URL_CLOUDFORMATION"] = self.invoke_api.url
        apis = stack.of_type("AWS::ApiGatewayV2::Api")
        (api_id,) = apis
        self.api = HttpApi(HttpApiModel.from_stack(stack, api_id), self.lambdas, account=stack.account,
                           region=stack.region)
        self._closers.append(self.api.close)
        stack.set(api_id, Ref=self.api.model.api_id, ApiEndpoint=self.api.url)
        self._defaults()
        self.mappings: list[EventSourceMapping] = [m for m in mappings_of(stack, self.moto, self.lambdas)]
        for mapping in self.mappings:
            mapping.start()
            self._closers.append(mapping.stop)
        self.outputs = stack.outputs()
        (stack.assembly / "outputs.json").write_text(json.dumps({stack.name: self.outputs}, indent=2))
        self.stacks.outputs = self.outputs

    def _database(self) -> None:
        stack = self.stack
        clusters = stack.of_type("AWS::RDS::DBCluster")
        if not clusters:
            return
        (cluster_id, cluster), = clusters.items()
        props = cluster["Properties"]
        password = self.dynamic(stack.resolve(props["MasterUserPassword"]))
        port = aws.free_port()
        self.cluster = ClusterServer(self.workdir, master_user=props["MasterUsername"], master_password=password,
                                     database=props.get("DatabaseName"))
        self._closers.append(self.cluster.stop)
        identifier = props.get("DBClusterIdentifier") or stack.generated_name(cluster_id, max_length=63).lower()
        proxies = stack.of_type("AWS::RDS::DBProxy")
        host = CLUSTER_HOST if proxies else "127.0.0.1"
        stack.set(cluster_id, Ref=identifier, **{"Endpoint.Address": host, "Endpoint.Port": str(port),
                                                 "ReadEndpoint.Address": host})
        for proxy_id, proxy in proxies.items():
            pprops = proxy["Properties"]
            self.proxy = RdsProxy(self.workdir, upstream_port=self.cluster.port, port=port,
                                  require_tls=bool(pprops.get("RequireTLS")))
            self._closers.append(self.proxy.close)
            stack.set(proxy_id, Ref=pprops["DBProxyName"], Endpoint="127.0.0.1",
                      DBProxyArn=stack.arn("rds", f"db-proxy:prx-{proxy_id.lower()[:17]}"))
        if self.proxy is None:
            front = RdsProxy(self.workdir, upstream_port=self.cluster.port, port=port, rds_proxy=False)
            self._closers.append(front.close)
            self.database_front = front
        else:
            self.database_front = self.proxy

    def _proxy_users(self) -> None:
        """The usernames of the secrets in the proxy's ``Auth`` list: the only users it lets in."""
        if self.proxy is None:
            return
        users: set[str] = set()
        for proxy in self.stack.of_type("AWS::RDS::DBProxy").values():
            for auth in proxy["Properties"].get("Auth", []):
                document = json.loads(aws.secret_value(self.stack, self.moto, self.stack.resolve(auth["SecretArn"])))
                users.add(str(document["username"]))
        self.proxy.users = users

    def dynamic(self, value: str) -> str:
        """``{{resolve:secretsmanager:<arn>:SecretString:<key>::}}`` dynamic references."""
        def one(match: re.Match[str]) -> str:
            secret = aws.secret_value(self.stack, self.moto, match.group(1))
            return str(json.loads(secret)[match.group(2)]) if match.group(2) else secret

        return _DYNAMIC_SECRET.sub(one, value)

    def _defaults(self) -> None:
        """Every other resource gets a Ref and the attributes the template reads, so references resolve."""
        for logical_id, resource in self.stack.resources.items():
            try:
                self.stack.attr(logical_id, "Ref")
                continue
            except UnresolvedReference:
                pass
            name = self.stack.generated_name(logical_id)
            service = resource["Type"].split("::")[1].lower()
            self.stack.set(logical_id, Ref=name, Arn=self.stack.arn(service, name), GroupId=f"sg-{name[-12:].lower()}",
                           CidrBlock="10.0.0.0/16", AllocationId=f"eipalloc-{name[-12:].lower()}")

    def client_env(self) -> dict[str, str]:
        """Environment for a CLI subprocess talking to this deployment as to an AWS account."""
        return {**aws.CREDENTIALS, **self.endpoints, "AWS_REGION": self.stack.region,
                "AWS_DEFAULT_REGION": self.stack.region}

    def client(self, service: str) -> Any:
        return self.moto.client(service, self.stack.region)

    def close(self) -> None:
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                closer()
        self._closers.clear()
