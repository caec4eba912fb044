"""The shop on the emulated stack: migrations through the engine Lambda, then the CRUD of tests/e2e/test_shop.py.

Every request goes through the HTTP API front to the sandboxed runtime Lambdas, whose Data
Engine reaches the emulated Aurora only through the RDS Proxy front, with the credentials
from the cluster's generated secret.
"""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.deployed.conftest import wait_for

pytestmark = pytest.mark.xdist_group("deployed")


@pytest.fixture(scope="module")
def migrated(migrated_stage):
    return migrated_stage


def cluster_rows(deployed, query: str, *args):
    """Read the cluster's database (``DatabaseName``) directly, as an operator with the master secret would."""
    database = next(iter(deployed.stack.of_type("AWS::RDS::DBCluster").values()))["Properties"].get("DatabaseName")
    with psycopg.connect(deployed.cluster.dsn(database or "postgres")) as conn:
        return conn.execute(query, args).fetchall()


def test_migrations_are_applied_through_the_engine_lambda(migrated, deployed, cli, project):
    applied = [r[0] for r in cluster_rows(deployed, "SELECT filename FROM flux_migrations ORDER BY filename")]
    assert applied[:3] == ["001_catalog.sql", "002_orders.sql", "003_seed.sql"], applied
    assert "900_no_transaction_indexes.sql" in applied, applied  # two statements outside a transaction
    indexes = {r[0] for r in cluster_rows(deployed, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
    assert {"orders_status_created_idx", "order_items_product_idx"} <= indexes
    again = cli("db", "migrate", "--stage", "dev", "-C", str(project), "--json")
    assert again.returncode == 0, again.stderr
    assert not json.loads(again.stdout).get("applied"), again.stdout


def test_shop_crud(migrated, api):
    created = api.post("/orders", json={"user_id": 1, "items": [{"product_id": 1, "quantity": 2}]})
    assert created.status_code == 201, created.text  # a Web Response through API Gateway: status and Location
    order_id = created.json()["id"]
    assert created.headers["location"] == f"/orders/{order_id}"
    fetched = api.get(f"/orders/{order_id}")
    assert fetched.status_code == 200, fetched.text
    assert fetched.json()["items"][0]["quantity"] == 2
    missing = api.get("/orders/99999999")
    assert missing.status_code == 404 and missing.json()["error"], missing.text
    for response in (created, fetched, missing):  # no laptop advice reaches an AWS caller (item 7)
        assert "flux dev" not in response.text and "Postgres running" not in response.text
    bad = api.post("/orders", json={"user_id": 1, "items": []})
    assert bad.status_code == 400 and bad.json()["error"] == "validation_failed", bad.text
    assert bad.json()["request_id"] == bad.headers["x-request-id"]
    listed = api.get("/orders", params={"status": "paid", "limit": "5"})
    assert listed.status_code == 200, listed.text
    assert all(o["status"] == "paid" for o in listed.json()["orders"])
    not_a_number = api.get("/orders/not-a-number")
    assert not_a_number.status_code == 400, not_a_number.text


def test_database_connections_go_to_the_cluster_endpoint_over_tls(migrated, api, deployed):
    """The dev profile has no RDS Proxy: the Lambdas connect to the cluster endpoint, with TLS (the prod stage's
    proxy rules are checked in test_stages.py)."""
    assert api.get("/orders", params={"limit": "1"}).status_code == 200
    assert deployed.proxy is None and deployed.database_front is not None
    assert deployed.database_front.accepted >= 1
    refused = [r for r in deployed.database_front.refused if r != "no TLS: plaintext_probe"]  # test_app_role's
    assert refused == [], deployed.database_front.refused


def test_order_enqueues_invoice_and_the_worker_runs_it_in_the_same_trace(migrated, api, deployed):
    created = api.post("/orders", json={"user_id": 2, "items": [{"product_id": 3, "quantity": 1}]})
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    wait_for(lambda: cluster_rows(deployed, "SELECT count(*) FROM invoices WHERE order_id = %s", order_id)[0][0] == 1,
             timeout=60)
