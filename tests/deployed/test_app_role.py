"""The application database role on the emulated stack: user code runs with DML rights only.

Migrations run in the engine Lambda with the master secret and create ``flux_app`` with the password of
the stack's application secret; the runtime Lambdas read only that secret and reach the cluster through
its endpoint (TLS required; the dev profile has no RDS Proxy: test_stages.py checks the prod stage's proxy,
which lets in only users its ``Auth`` secrets name). Checked from outside, as an operator would: the
cluster's catalog and ``pg_stat_activity`` with the master secret, and direct connections through the
endpoint the Lambdas use with the application secret's credentials.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors

from tests.deployed.conftest import function_name
from tests.deployed.harness.deployment import Deployment

pytestmark = pytest.mark.xdist_group("deployed")

ROLE = "flux_app"


def database_name(deployed: Deployment) -> str:
    cluster = next(iter(deployed.stack.of_type("AWS::RDS::DBCluster").values()))["Properties"]
    return str(cluster.get("DatabaseName") or "postgres")


def as_master(deployed: Deployment, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(deployed.cluster.dsn(database_name(deployed)), autocommit=True) as conn:  # type: ignore[union-attr]
        cursor = conn.execute(query, args)
        return cursor.fetchall() if cursor.description else []


def app_secret(deployed: Deployment, flux_function: str = "list_orders") -> dict[str, Any]:
    """The secret a runtime Lambda is given (its DATABASE_SECRET_ARN), read as that Lambda would."""
    variables = deployed.lambdas.specs[function_name(deployed, flux_function)].variables
    arn = deployed.stack.resolve(variables["DATABASE_SECRET_ARN"])
    return json.loads(deployed.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])


def through_proxy(deployed: Deployment, user: str, password: str) -> psycopg.Connection[Any]:
    """Through what the Lambdas connect to: the RDS Proxy, or the cluster endpoint of a stage without one."""
    assert deployed.database_front is not None
    return psycopg.connect(host="127.0.0.1", port=deployed.database_front.port, dbname=database_name(deployed), user=user,
                           password=password, sslmode="require", autocommit=True, connect_timeout=5)


def test_before_any_migrate_a_query_says_to_run_flux_db_migrate(deployed: Deployment, api) -> None:
    """A stage deployed but not migrated (here: the role dropped and every warm container gone) answers 503 naming
    the command, not a bare connection failure."""
    if as_master(deployed, "SELECT 1 FROM pg_roles WHERE rolname = %s", ROLE):
        as_master(deployed, f"DROP OWNED BY {ROLE}")
        as_master(deployed, f"DROP ROLE {ROLE}")
    deployed.lambdas.discard_warm()
    secret = app_secret(deployed)
    assert set(secret) >= {"username", "password"} and "host" not in secret   # the host is DATABASE_HOST (proxy)
    refused = api.get("/orders", params={"limit": "1"})
    assert refused.status_code == 503, refused.text
    body = refused.json()
    assert body["error"] == "database_unavailable" and refused.headers["retry-after"]
    assert "run `flux db migrate --stage dev`" in body["message"], body
    assert secret["password"] not in refused.text


def test_the_engine_lambda_creates_the_role_with_the_secret_password(migrated_stage, deployed: Deployment) -> None:
    assert migrated_stage.get("app_role") == ROLE, migrated_stage
    ((superuser, createrole, createdb, bypassrls, login, member),) = as_master(
        deployed, "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolcanlogin, "
                  "pg_has_role(rolname, current_user, 'MEMBER') FROM pg_roles WHERE rolname = %s", ROLE)
    assert (superuser, createrole, createdb, bypassrls, login, member) == (False, False, False, False, True, False)
    secret = app_secret(deployed)
    with through_proxy(deployed, secret["username"], secret["password"]) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (ROLE,)


def test_the_runtime_connects_as_the_application_role(migrated_stage, deployed: Deployment, api) -> None:
    listed = api.get("/orders", params={"limit": "1"})
    assert listed.status_code == 200, listed.text
    users = {r[0] for r in as_master(deployed, "SELECT usename FROM pg_stat_activity "
                                               "WHERE application_name = 'flux-engine'")}
    assert users == {ROLE}, users


def test_ddl_with_the_application_credentials_is_permission_denied(migrated_stage, deployed: Deployment) -> None:
    secret = app_secret(deployed)
    with through_proxy(deployed, secret["username"], secret["password"]) as conn:
        for statement in ("DROP TABLE orders", "TRUNCATE orders", "ALTER TABLE orders ADD COLUMN x int",
                          "CREATE TABLE evil (id int)", "DELETE FROM flux_migrations"):
            with pytest.raises(pg_errors.InsufficientPrivilege, match=r"permission denied|must be owner"):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) >= 0 FROM orders").fetchone() == (True,)
    assert as_master(deployed, "SELECT to_regclass('public.orders') IS NOT NULL") == [(True,)]


def test_the_cluster_endpoint_refuses_connections_without_tls(deployed: Deployment) -> None:
    """No proxy in dev: the cluster endpoint itself is what must refuse plaintext (Aurora PostgreSQL 17)."""
    assert deployed.proxy is None and deployed.database_front is not None
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(host="127.0.0.1", port=deployed.database_front.port, dbname=database_name(deployed),
                        user="plaintext_probe", password="x", sslmode="disable", connect_timeout=5).close()


def test_ctx_db_cannot_reach_the_migration_history_or_the_catalog(migrated_stage, api) -> None:
    reached = api.post("/db-reach", json={})
    assert reached.status_code == 200, reached.text
    outcome = reached.json()
    assert outcome["orders"]["ok"] is True
    for attempt in ("delete_history", "insert_history", "read_history", "system_catalog"):
        assert outcome[attempt]["ok"] is False and outcome[attempt]["status"] == 400, outcome
        assert outcome[attempt]["code"] == "invalid_query", outcome


def test_a_right_the_role_lacks_is_a_403_and_the_next_migrate_restores_it(migrated_stage, deployed: Deployment,
                                                                         api, cli, project) -> None:
    as_master(deployed, f"REVOKE SELECT ON orders FROM {ROLE}")
    try:
        denied = api.get("/orders", params={"limit": "1"})
        assert denied.status_code == 403, denied.text
        body = denied.json()
        assert body["error"] == "permission_denied" and body["request_id"] == denied.headers["x-request-id"]
        assert "select orders: permission denied for table orders" in body["message"], body
    finally:
        done = cli("db", "migrate", "--stage", "dev", "-C", str(project), "--json")
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert api.get("/orders", params={"limit": "1"}).status_code == 200
