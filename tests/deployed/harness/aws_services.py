"""DynamoDB, SQS and Secrets Manager for an emulated stack: one moto server, resources from the template.

The moto server runs as its own process on 127.0.0.1 (a random port), so the Lambdas reach
it over the network with the SDK exactly as they would reach the AWS endpoints
(``AWS_ENDPOINT_URL``). Each resource is created from its own template definition, as
CloudFormation would create it:

* ``AWS::DynamoDB::Table``: key schema, attribute definitions, GSIs with their projection,
  billing mode, and ``TimeToLiveSpecification``;
* ``AWS::SQS::Queue``: FIFO attributes, visibility timeout, retention, and the
  ``RedrivePolicy`` (dead-letter queues first, since the policy names their ARN);
* ``AWS::SecretsManager::Secret``: ``SecretString`` or ``GenerateSecretString`` (template
  + generated key, the excluded characters honoured);
* ``AWS::SecretsManager::SecretTargetAttachment`` to a DB cluster: the connection keys
  Secrets Manager adds for RDS (``engine``, ``host``, ``port``, ``dbClusterIdentifier`` and, when the
  cluster has a ``DatabaseName``, ``dbname``: the shape of the secrets users report, e.g. aws-cdk#11517).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import string
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from tests.deployed.harness.template import Stack

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """``python -m moto.server`` on 127.0.0.1 in its own process group."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
                                        env={**os.environ, **CREDENTIALS})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited: see {log_path}")
            time.sleep(0.05)
        raise RuntimeError("moto server did not start in 30 s")

    def client(self, service: str, region: str) -> Any:
        return boto3.client(service, endpoint_url=self.url, region_name=region,
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            config=Config(retries={"max_attempts": 2}))

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self._log.close()


def _generate(spec: dict[str, Any]) -> str:
    """``GenerateSecretString`` as Secrets Manager's GetRandomPassword would fill it."""
    excluded = set(spec.get("ExcludeCharacters", ""))
    alphabet = [c for c in string.ascii_letters + string.digits + string.punctuation if c not in excluded]
    if spec.get("ExcludePunctuation"):
        alphabet = [c for c in alphabet if c not in string.punctuation]
    value = "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))
    if "SecretStringTemplate" in spec:
        document = json.loads(spec["SecretStringTemplate"])
        document[spec["GenerateStringKey"]] = value
        return json.dumps(document)
    return value


def create_tables(stack: Stack, moto: MotoServer) -> None:
    client = moto.client("dynamodb", stack.region)
    for logical_id, resource in stack.of_type("AWS::DynamoDB::Table").items():
        props = stack.resolve(resource["Properties"])
        name = props.get("TableName") or stack.generated_name(logical_id, max_length=255)
        args: dict[str, Any] = {"TableName": name, "KeySchema": props["KeySchema"],
                                "AttributeDefinitions": props["AttributeDefinitions"],
                                "BillingMode": props.get("BillingMode", "PROVISIONED")}
        if args["BillingMode"] == "PROVISIONED":
            args["ProvisionedThroughput"] = props["ProvisionedThroughput"]
        if props.get("GlobalSecondaryIndexes"):
            args["GlobalSecondaryIndexes"] = [
                {k: v for k, v in gsi.items() if k in ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")}
                for gsi in props["GlobalSecondaryIndexes"]]
        client.create_table(**args)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            client.update_time_to_live(TableName=name, TimeToLiveSpecification={
                "AttributeName": ttl["AttributeName"], "Enabled": True})
        stack.set(logical_id, Ref=name, Arn=stack.arn("dynamodb", f"table/{name}"))


_QUEUE_ATTRIBUTES = ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "MaximumMessageSize",
                     "ReceiveMessageWaitTimeSeconds", "FifoQueue", "ContentBasedDeduplication", "DeduplicationScope",
                     "FifoThroughputLimit")


def create_queues(stack: Stack, moto: MotoServer) -> None:
    client = moto.client("sqs", stack.region)
    queues = stack.of_type("AWS::SQS::Queue")
    ordered = sorted(queues, key=lambda lid: "RedrivePolicy" in queues[lid].get("Properties", {}))
    for logical_id in ordered:
        props = stack.resolve(queues[logical_id].get("Properties", {}))
        fifo = bool(props.get("FifoQueue"))
        name = props.get("QueueName") or stack.generated_name(logical_id, max_length=80,
                                                              suffix=".fifo" if fifo else "")
        attributes = {key: str(props[key]).lower() if isinstance(props[key], bool) else str(props[key])
                      for key in _QUEUE_ATTRIBUTES if key in props}
        if "RedrivePolicy" in props:
            attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
        url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        stack.set(logical_id, Ref=url, Arn=stack.arn("sqs", name), QueueName=name, QueueUrl=url)


def create_secrets(stack: Stack, moto: MotoServer) -> None:
    client = moto.client("secretsmanager", stack.region)
    for logical_id, resource in stack.of_type("AWS::SecretsManager::Secret").items():
        props = stack.resolve(resource.get("Properties", {}))
        name = props.get("Name") or stack.generated_name(logical_id, max_length=512)
        value = props.get("SecretString") if "SecretString" in props else _generate(props.get("GenerateSecretString", {}))
        arn = client.create_secret(Name=name, SecretString=value)["ARN"]
        stack.set(logical_id, Ref=arn, Id=arn)


def attach_secret_targets(stack: Stack, moto: MotoServer) -> None:
    """RDS connection details into each attached secret, as Secrets Manager writes them."""
    client = moto.client("secretsmanager", stack.region)
    for logical_id, resource in stack.of_type("AWS::SecretsManager::SecretTargetAttachment").items():
        props = resource["Properties"]
        arn = stack.resolve(props["SecretId"])
        target = props["TargetId"]["Ref"]
        document = json.loads(client.get_secret_value(SecretId=arn)["SecretString"])
        if props["TargetType"] == "AWS::RDS::DBCluster":
            document.update({"engine": "postgres", "host": stack.attr(target, "Endpoint.Address"),
                             "port": int(stack.attr(target, "Endpoint.Port")),
                             "dbClusterIdentifier": stack.attr(target, "Ref")})
            database = stack.resources[target]["Properties"].get("DatabaseName")
            if database:  # the generated secret of a cluster names its database (seen in real secrets)
                document["dbname"] = database
        else:
            raise NotImplementedError(f"{logical_id}: target type {props['TargetType']} is not emulated")
        client.put_secret_value(SecretId=arn, SecretString=json.dumps(document))
        stack.set(logical_id, Ref=arn)


def secret_value(stack: Stack, moto: MotoServer, arn: str) -> str:
    return moto.client("secretsmanager", stack.region).get_secret_value(SecretId=arn)["SecretString"]
