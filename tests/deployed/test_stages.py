"""Two stages of one project side by side, and the database.url and database.secret_arn modes of the same project.

Physical names that must be unique in an account and region (RDS Proxy, cluster and
instance identifiers, subnet groups, function names, tables, queues, secrets, log groups,
roles) may not be fixed strings: two stages would collide on the second deployment.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.deployed.conftest import EXISTING_SECRET_ARN, EXISTING_SECRET_NAME
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


def test_secret_arn_mode_serves_requests_and_migrates(other_synths, deployed, workdir, cli, project):
    """database.secret_arn: a secret the operator created before the stack, in the RDS JSON shape, pointing at the
    database through the RDS Proxy front; hello, one shop CRUD round trip and `flux db migrate --stage` go through it."""
    summary = other_synths["secret"].result()
    template = json.loads(Path(summary["template"]).read_text())
    assert not [lid for lid, r in template["Resources"].items()
                if r["Type"] in {"AWS::RDS::DBCluster", "AWS::RDS::DBProxy"}], \
        "secret_arn mode must not provision a database"
    # Its only secret is the application role's (user code does not run as the existing secret's user)
    (app_secret,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::SecretsManager::Secret"]
    assert json.loads(app_secret["Properties"]["GenerateSecretString"]["SecretStringTemplate"]) == {
        "username": "flux_app_secret"}
    assert EXISTING_SECRET_ARN in json.dumps(template), "the stack's Lambdas are not given the existing secret"
    cluster = next(iter(deployed.stack.of_type("AWS::RDS::DBCluster").values()))["Properties"]
    front = deployed.database_front
    assert front is not None and deployed.cluster is not None
    secret = {"username": deployed.cluster.master_user, "password": deployed.cluster.master_password,
              "host": "127.0.0.1", "port": front.port, "dbname": cluster["DatabaseName"],
              "engine": "postgres"}
    stage = Deployment(Path(summary["assembly"]), summary["stack"], workdir / "run-secret",
                       existing_secrets={EXISTING_SECRET_NAME: json.dumps(secret)})
    # An operator's proxy would have to know the application role's secret too (RDS Proxy authenticates per secret)
    if front.users is not None:
        front.users.add("flux_app_secret")
    try:
        with httpx.Client(base_url=stage.api.url, timeout=60) as client:
            hello = client.post("/hello", json={"name": "secret"})
            assert hello.status_code == 200, hello.text
            migrated = cli("db", "migrate", "--stage", "secretarn", "-C", str(project), "--json",
                           env=stage.client_env())
            assert migrated.returncode == 0, f"{migrated.stdout}\n{migrated.stderr}"
            with psycopg.connect(deployed.cluster.dsn(cluster["DatabaseName"])) as conn:  # the operator's view
                applied = {r[0] for r in conn.execute("SELECT filename FROM flux_migrations").fetchall()}
            assert {"001_catalog.sql", "910_ordered_runs.sql"} <= applied, applied
            created = client.post("/orders", json={"user_id": 1, "items": [{"product_id": 1, "quantity": 2}]})
            assert created.status_code == 201, created.text
            order = created.json()
            fetched = client.get(f"/orders/{order['id']}")
            assert fetched.status_code == 200, fetched.text
            assert fetched.json()["items"][0]["quantity"] == 2
            assert not [r for r in front.refused if not r.startswith(("user ", "no TLS: plaintext_probe"))], \
                f"the database front refused connections: {front.refused}"
            with psycopg.connect(deployed.cluster.dsn(cluster["DatabaseName"])) as conn:
                users = {r[0] for r in conn.execute("SELECT usename FROM pg_stat_activity WHERE "
                                                    "application_name = 'flux-engine'").fetchall()}
            assert "flux_app_secret" in users, users    # its runtime ran as its own application role
    finally:
        if front.users is not None:
            front.users.discard("flux_app_secret")
        stage.close()


def test_a_prod_profile_stage_serves_database_requests_through_its_rds_proxy(other_synths, workdir, cli, project):
    """The prod profile keeps the RDS Proxy (dev has none): deployed on its own, migrated with `flux db migrate
    --stage prod`, it answers a database query through the proxy, whose startup rules every connection passes,
    and the proxy refuses a user none of its secrets names."""
    summary = other_synths["prod"].result()
    assert summary["profile"] == "prod"
    stage = Deployment(Path(summary["assembly"]), summary["stack"], workdir / "run-prod")
    try:
        assert stage.proxy is not None and stage.database_front is stage.proxy
        migrated = cli("db", "migrate", "--stage", "prod", "-C", str(project), "--json", env=stage.client_env())
        assert migrated.returncode == 0, f"{migrated.stdout}\n{migrated.stderr}"
        with httpx.Client(base_url=stage.api.url, timeout=60) as client:
            orders = client.get("/orders", params={"limit": "1"})
            assert orders.status_code == 200, orders.text
        assert stage.proxy.accepted >= 2   # the engine's migrate and the runtime's query
        options = [r for r in stage.proxy.refused if not r.startswith("user ")]
        assert options == [], f"RDS Proxy refused startup options: {stage.proxy.refused}"
        with pytest.raises(psycopg.OperationalError, match="has no credentials for the role intruder"):
            psycopg.connect(host="127.0.0.1", port=stage.proxy.port, dbname="shop", user="intruder",
                            password="whatever", sslmode="require", connect_timeout=5).close()
    finally:
        stage.close()
