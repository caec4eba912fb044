"""examples/shop under `flux dev` with its own embedded Postgres, driven over HTTP and through the CLI.

One server for the module (starting Postgres and migrating is the slow part). The project is a copy in
/tmp (not pytest's tmp_path: its 0700 tree would lock out the embedded server's own user).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.e2e.conftest import REPO, DevServer, flux

# One worker runs the whole module, so it shares one server (and one embedded Postgres).
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("shop")]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "artifacts"


@pytest.fixture(scope="module")
def shop() -> Iterator[DevServer]:
    base = Path(tempfile.mkdtemp(prefix="flux-shop-e2e-"))
    root = base / "shop"
    shutil.copytree(REPO / "examples" / "shop", root, ignore=shutil.ignore_patterns(".flux"))
    config = json.loads((root / "flux.json").read_text())
    # Low enough that a filter over 50,000 rows without an index counts as slow on any machine.
    config["observability"]["slow_query_ms"] = 2
    (root / "flux.json").write_text(json.dumps(config))
    server = DevServer(root, env={"DATABASE_URL": ""})
    try:
        yield server
    finally:
        code = server.stop()
        shutil.rmtree(base, ignore_errors=True)
    assert code == 0


def trace(server: DevServer, request_id: str, *, wait_for: int = 1) -> dict:
    deadline = time.monotonic() + 10
    while True:
        response = server.client.get(f"/_flux/api/traces/{request_id}")
        if response.status_code == 200 and len(response.json()["spans"]) >= wait_for:
            return response.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"trace {request_id} not complete: {response.text[:500]}")
        time.sleep(0.1)


def dsn_of(server: DevServer) -> str:
    from functions.engine.locate import locate_database

    return locate_database(server.project, env={}).dsn


def test_embedded_postgres_migrations_and_crud(shop):
    assert "database: embedded" in shop.output()
    assert "001_catalog.sql" in shop.output()
    created = shop.client.post("/orders", json={"user_id": 1, "items": [{"product_id": 1, "quantity": 2}]})
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    assert created.headers["location"] == f"/orders/{order_id}"
    fetched = shop.client.get(f"/orders/{order_id}")
    assert fetched.status_code == 200
    assert fetched.json()["items"][0]["quantity"] == 2
    assert shop.client.get("/orders/99999999").status_code == 404
    bad = shop.client.post("/orders", json={"user_id": 1, "items": []})
    assert bad.status_code == 400 and bad.json()["error"] == "validation_failed"
    listed = shop.client.get("/orders", params={"status": "paid", "limit": "5"})
    assert listed.status_code == 200
    assert all(o["status"] == "paid" for o in listed.json()["orders"])
    spans = trace(shop, created.headers["x-request-id"], wait_for=4)["spans"]
    db = [s for s in spans if s["kind"] == "db"]
    assert {s["attrs"]["operation"] for s in db} >= {"select", "insert"}
    users = [s for s in db if s["attrs"]["table"] == "users"]
    assert users and all("?" in s["attrs"]["sql_shape"] for s in users)
    assert all(s["attrs"]["cache"] in ("HIT", "MISS", "BYPASS") for s in db)


def test_n_plus_one_sequential_and_concurrent_but_not_batched(shop):
    reports = {}
    for name in ("slow", "concurrent", "batched"):
        response = shop.client.get(f"/reports/orders-{name}")
        assert response.status_code == 200, response.text
        reports[name] = response
    assert reports["slow"].json() == reports["batched"].json() == reports["concurrent"].json()
    slow = trace(shop, reports["slow"].headers["x-request-id"], wait_for=5)
    concurrent = trace(shop, reports["concurrent"].headers["x-request-id"], wait_for=5)
    batched = trace(shop, reports["batched"].headers["x-request-id"], wait_for=3)
    assert slow["n1_warnings"] and slow["n1_warnings"][0]["table"] == "order_items"
    assert slow["n1_warnings"][0]["concurrent"] is False
    assert concurrent["n1_warnings"] and concurrent["n1_warnings"][0]["concurrent"] is True
    assert batched["n1_warnings"] == []


def test_index_suggestion_is_verified_and_disappears_after_its_ddl(shop):
    dsn = dsn_of(shop)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute((REPO / "examples" / "shop" / "seed" / "orders_50k.sql").read_text())
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] >= 50_000
    response = shop.client.get("/orders", params={"customer_email": "nobody-in-particular@example.com"})
    assert response.status_code == 200
    result = trace(shop, response.headers["x-request-id"], wait_for=3)
    suggestions = [s for s in result["suggested_indexes"] if "customer_email" in s["columns"]]
    assert suggestions, result["suggested_indexes"]
    suggestion = suggestions[0]
    assert suggestion["table"] == "orders"
    assert suggestion["est_cost_after"] < suggestion["est_cost_before"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(suggestion["ddl"])
    again = shop.client.get("/orders", params={"customer_email": "nobody-in-particular@example.com"})
    result = trace(shop, again.headers["x-request-id"], wait_for=3)
    assert not [s for s in result["suggested_indexes"] if "customer_email" in s["columns"]]


def test_api_key_route_with_flux_keys_create(shop):
    assert shop.client.get("/me").status_code == 401
    created = flux("keys", "create", "--name", "e2e", "-C", str(shop.project))
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1].strip()
    response = shop.client.get("/me", headers={"x-api-key": key})
    assert response.status_code == 200
    assert response.json()["auth"]["key_name"] == "e2e"
    gateway = next(s for s in trace(shop, response.headers["x-request-id"], wait_for=2)["spans"]
                   if s["kind"] == "gateway")
    assert gateway["attrs"]["auth.key_name"] == "e2e"


def test_cli_trace_tail_logs_and_why(shop):
    hello = shop.client.post("/hello", json={"name": "Trace"})
    request_id = hello.headers["x-request-id"]
    trace(shop, request_id, wait_for=2)
    shown = flux("trace", request_id, "-C", str(shop.project))
    assert shown.returncode == 0, shown.stderr
    assert "POST /hello" in shown.stdout and "└─ hello" in shown.stdout
    assert "saying hello" in shown.stdout  # the ctx.log line of the request
    as_json = json.loads(flux("trace", request_id, "--json", "-C", str(shop.project)).stdout)
    assert {s["kind"] for s in as_json["spans"]} == {"gateway", "function"}
    logs = flux("logs", "--request-id", request_id, "--json", "-C", str(shop.project))
    assert any(json.loads(line)["message"] == "saying hello" for line in logs.stdout.splitlines() if line.strip()) \
        or "saying hello" in logs.stdout
    # Only this test calls /hello, so its request is the one tail prints, whatever ran before it.
    tail = flux("tail", "--function", "hello", "--count", "1", "--json", "-C", str(shop.project), timeout=60)
    assert tail.returncode == 0, tail.stderr
    row = json.loads(tail.stdout.strip().splitlines()[0])
    assert row["trace_id"] == request_id and len(row["trace_id"]) == 32
    assert (row["method"], row["route"], row["http_status"]) == ("POST", "/hello", 200)
    failing = shop.client.get("/orders/not-a-number")
    assert failing.status_code == 400
    crashed = shop.client.post("/orders", json={"user_id": 1, "items": [{"product_id": 999999, "quantity": 1}]})
    assert crashed.status_code == 404
    why = flux("why", crashed.headers["x-request-id"], "-C", str(shop.project))
    assert why.returncode == 0, why.stderr
    assert "functions/create_order/index.ts" in why.stdout


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium (make test installs it)")
def test_dashboard_lists_requests_and_renders_a_waterfall(shop):
    from playwright.sync_api import sync_playwright

    response = shop.client.get("/reports/orders-slow")
    request_id = response.headers["x-request-id"]
    trace(shop, request_id, wait_for=5)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(shop.url + "/_flux/")
        page.locator(f"#traces tbody tr[data-trace-id='{request_id}']").wait_for(timeout=10_000)
        page.screenshot(path=str(ARTIFACTS / "shop-traces.png"), full_page=True)
        page.locator(f"#traces tbody tr[data-trace-id='{request_id}']").click()
        page.locator("#waterfall .wf-row[data-kind='db']").first.wait_for(timeout=10_000)
        assert page.locator("#waterfall .wf-row[data-kind='db']").count() >= 21
        assert page.locator("#waterfall .wf-row .tag.n1").count() >= 20
        page.screenshot(path=str(ARTIFACTS / "shop-trace.png"), full_page=True)
        browser.close()
    assert errors == []


def wait_for(predicate, *, timeout: float = 20, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def test_order_enqueues_invoice_in_the_same_trace(shop):
    created = shop.client.post("/orders", json={"user_id": 2, "items": [{"product_id": 3, "quantity": 1}]})
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["invoice_job_id"]
    request_id = created.headers["x-request-id"]

    def invoiced() -> dict | None:
        result = trace(shop, request_id, wait_for=1)
        names = [s["name"] for s in result["spans"]]
        return result if "send_invoice" in names and "async → send_invoice" in names else None

    result = wait_for(invoiced)
    by_id = {s["span_id"]: s for s in result["spans"]}
    worker = next(s for s in result["spans"] if s["kind"] == "function" and s["name"] == "send_invoice")
    attempt = by_id[worker["parent_span_id"]]
    enqueue = by_id[attempt["parent_span_id"]]
    assert attempt["kind"] == "queue" and attempt["attrs"]["attempt"] == 1
    assert attempt["attrs"]["outcome"] == "ok"
    assert enqueue["name"] == "enqueue send_invoice"
    assert by_id[enqueue["parent_span_id"]]["name"] == "create_order"
    with psycopg.connect(dsn_of(shop)) as conn:
        rows = conn.execute("SELECT count(*) FROM invoices WHERE order_id = %s", (order["id"],)).fetchone()[0]
    assert rows == 1
    shown = flux("trace", request_id, "-C", str(shop.project))
    assert "async → send_invoice" in shown.stdout


def test_async_http_function_answers_202_at_once(shop):
    response = shop.client.post("/flaky_webhook", json={"webhook_id": "e2e-ok", "fail_times": 0})
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"request_id", "job_id"}
    assert body["request_id"] == response.headers["x-request-id"]


def test_failing_job_lands_in_the_dlq_and_replay_runs_it_in_the_same_trace(shop):
    response = shop.client.post("/flaky_webhook", json={"webhook_id": "e2e-dlq", "fail_times": 3})
    assert response.status_code == 202
    job_id = response.json()["job_id"]

    def dead() -> dict | None:
        listed = flux("queue", "dlq", "list", "--json", "-C", str(shop.project))
        return next((e for e in json.loads(listed.stdout or "[]") if e["id"] == job_id), None)

    entry = wait_for(dead, timeout=30, interval=0.3)
    assert entry["function"] == "flaky_webhook"
    assert entry["attempts"] == 3
    assert "endpoint unavailable" in entry["last_error"]
    assert entry["trace_id"] == response.headers["x-request-id"]
    replayed = flux("queue", "dlq", "replay", job_id, "--json", "-C", str(shop.project))
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout)["trace_id"] == entry["trace_id"]

    def delivered() -> bool:
        spans = trace(shop, entry["trace_id"])["spans"]
        return any(s["kind"] == "queue" and s["attrs"].get("outcome") == "ok" for s in spans)

    wait_for(delivered, timeout=20)
    stats = json.loads(flux("queue", "stats", "--json", "-C", str(shop.project)).stdout)
    assert stats["flaky_webhook"]["failed"] >= 2


def test_list_orders_is_optional_auth_and_shows_the_callers_own_orders(shop):
    anonymous = shop.client.get("/orders", params={"limit": "100"})
    assert anonymous.status_code == 200
    assert {o["user_id"] for o in anonymous.json()["orders"]} - {3}, "the seed has orders of other users"
    created = flux("keys", "create", "--name", "user-3", "-C", str(shop.project))
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1].strip()
    mine = shop.client.get("/orders", params={"limit": "100"}, headers={"x-api-key": key})
    assert mine.status_code == 200, mine.text
    assert mine.json()["user_id"] == 3
    assert all(o["user_id"] == 3 for o in mine.json()["orders"])
    bad = shop.client.get("/orders", headers={"x-api-key": "flx_live_notarealkey"})
    assert bad.status_code == 401 and bad.json()["error"] == "unauthorized"


def test_cancel_order_answers_204_then_409(shop):
    order = shop.client.post("/orders", json={"user_id": 1, "items": [{"product_id": 2, "quantity": 1}]}).json()
    assert shop.client.delete(f"/orders/{order['id']}").status_code == 401
    created = flux("keys", "create", "--name", "support", "-C", str(shop.project))
    key = created.stdout.strip().splitlines()[-1].strip()
    cancelled = shop.client.delete(f"/orders/{order['id']}", headers={"x-api-key": key})
    assert cancelled.status_code == 204 and cancelled.content == b""
    assert cancelled.headers["x-request-id"]
    assert shop.client.get(f"/orders/{order['id']}").json()["status"] == "cancelled"
    again = shop.client.delete(f"/orders/{order['id']}", headers={"x-api-key": key})
    assert again.status_code == 409 and again.json()["error"] == "not_cancellable"
    assert shop.client.delete("/orders/99999999", headers={"x-api-key": key}).status_code == 404


def test_form_encoded_payment_webhook_is_verified_over_the_raw_body(shop):
    import hashlib
    import hmac

    secret = "whsec-e2e-0123456789"
    result = flux("secrets", "set", "PAYMENT_WEBHOOK_SECRET", "-C", str(shop.project), input=f"{secret}\n")
    assert result.returncode == 0, result.stderr
    order = shop.client.post("/orders", json={"user_id": 2, "items": [{"product_id": 1, "quantity": 3}]}).json()
    body = f"order_id={order['id']}&amount={order['total']}&status=paid".encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    form = {"content-type": "application/x-www-form-urlencoded"}

    forged = shop.client.post("/webhooks/payment", content=body, headers={**form, "x-signature": "sha256=" + "0" * 64})
    assert forged.status_code == 401 and forged.json()["error"] == "invalid_signature"
    tampered = body.replace(b"status=paid", b"status=paid&x=1")
    assert shop.client.post("/webhooks/payment", content=tampered,
                            headers={**form, "x-signature": signature}).status_code == 401
    assert shop.client.get(f"/orders/{order['id']}").json()["status"] == "pending"

    paid = shop.client.post("/webhooks/payment", content=body, headers={**form, "x-signature": signature})
    assert paid.status_code == 204, paid.text
    assert shop.client.get(f"/orders/{order['id']}").json()["status"] == "paid"
    logs = shop.client.get("/_flux/api/logs", params={"request_id": paid.headers["x-request-id"]}).json()
    assert secret not in json.dumps(logs)
