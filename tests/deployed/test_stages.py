"""Two stages of one project side by side, and the database.url mode of the same project.

Physical names that must be unique in an account and region (RDS Proxy, cluster and
instance identifiers, subnet groups, function names, tables, queues, secrets, log groups,
roles) may not be fixed strings: two stages would collide on the second deployment.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.deployed.harness.deployment import Deployment

pytestmark = pytest.mark.xdist_group("deployed")

UNIQUE_NAMES = {
    "AWS::RDS::DBProxy": "DBProxyName", "AWS::RDS::DBCluster": "DBClusterIdentifier",
    "AWS::RDS::DBInstance": "DBInstanceIdentifier", "AWS::RDS::DBSubnetGroup": "DBSubnetGroupName",
    "AWS::Lambda::Function": "FunctionName", "AWS::DynamoDB::Table": "TableName", "AWS::SQS::Queue": "QueueName",
    "AWS::SecretsManager::Secret": "Name", "AWS::Logs::LogGroup": "LogGroupName", "AWS::IAM::Role": "RoleName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName", "AWS::S3::Bucket": "BucketName",
    "AWS::CloudWatch::Alarm": "AlarmName", "AWS::Events::Rule": "Name",
}


def explicit_names(summary: dict) -> dict[tuple[str, str], str]:
    template = json.loads(Path(summary["template"]).read_text())
    names = {}
    for logical_id, resource in template["Resources"].items():
        prop = UNIQUE_NAMES.get(resource["Type"])
        value = resource.get("Properties", {}).get(prop) if prop else None
        if value is not None:
            names[(resource["Type"], json.dumps(value, sort_keys=True))] = logical_id
    return names


def test_two_stages_have_no_clashing_physical_names(synthesized, other_synths):
    prod = other_synths["prod"].result()
    assert prod["stack"] != synthesized["stack"]
    clashes = sorted(set(explicit_names(synthesized)) & set(explicit_names(prod)))
    assert clashes == [], f"fixed physical names shared by {synthesized['stack']} and {prod['stack']}: {clashes}"


def test_database_url_mode_serves_requests(other_synths, deployed, workdir, cli, project):
    """database.url: the stack keeps the URL (a NoEcho parameter) in a secret; every Lambda must start with it."""
    summary = other_synths["url"].result()
    database = next(iter(deployed.stack.of_type("AWS::RDS::DBCluster").values()))["Properties"]["DatabaseName"]
    url = f"postgresql://{deployed.cluster.master_user}:{deployed.cluster.master_password}@127.0.0.1:{deployed.cluster.port}/{database}"
    parameters = {"DatabaseUrl": url}
    stage = Deployment(Path(summary["assembly"]), summary["stack"], workdir / "run-url", parameters=parameters)
    try:
        import httpx

        with httpx.Client(base_url=stage.api.url, timeout=60) as client:
            hello = client.post("/hello", json={"name": "url"})
            assert hello.status_code == 200, hello.text
            env = {**stage.client_env()}
            migrated = cli("db", "migrate", "--stage", "urlmode", "-C", str(project), "--json", env=env)
            assert migrated.returncode == 0, f"{migrated.stdout}\n{migrated.stderr}"
            orders = client.get("/orders", params={"limit": "1"})
            assert orders.status_code == 200, orders.text
    finally:
        stage.close()
