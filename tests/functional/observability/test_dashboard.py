"""The dashboard in headless Chromium, served by ObservabilityApi through the ASGI adapter and uvicorn.

Chromium comes from Debian (`apt-get install -y chromium`), never downloaded by Playwright.
Screenshots go to tests/artifacts/dashboard-*.png.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from observability_seed import FAILED_TRACE, ORDER_TRACE, FakeAdvice, seed

from functions.observability.api import ObservabilityApi
from functions.observability.asgi import asgi_app
from functions.observability.sqlite_store import SqliteSpanStore

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None,
                                reason="needs Debian chromium: apt-get update && apt-get install -y chromium")


@pytest.fixture
def base_url(tmp_path: Path, serve: Any) -> Iterator[str]:
    store = SqliteSpanStore(tmp_path / ".flux" / "traces.db")
    seed(store)
    with serve(asgi_app(ObservabilityApi(store, advice=FakeAdvice()))) as url:
        yield url
    store.close()


@pytest.fixture
def page(base_url: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        page = context.new_page()
        page.problems = []  # type: ignore[attr-defined]
        page.on("pageerror", lambda exc: page.problems.append(f"page error: {exc}"))
        page.on("console", lambda msg: msg.type == "error" and page.problems.append(f"console: {msg.text}"))
        page.on("request", lambda req: req.url.startswith(base_url) or page.problems.append(f"external: {req.url}"))
        page.set_default_timeout(10_000)
        yield page
        context.close()
        browser.close()


def test_list_filter_open_trace_and_see_its_spans(page: Any, base_url: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.goto(base_url + "/_flux/")
    rows = page.locator("#traces tbody tr[data-trace-id]")
    rows.first.wait_for()
    assert rows.count() == 6
    assert rows.first.get_attribute("data-trace-id") == ORDER_TRACE
    page.screenshot(path=str(ARTIFACTS / "dashboard-traces.png"), full_page=True)

    page.select_option("#f-status", "error")
    page.wait_for_function("document.querySelectorAll('#traces tbody tr[data-trace-id]').length === 1")
    assert rows.first.get_attribute("data-trace-id") == FAILED_TRACE
    assert "status=error" in page.url
    page.select_option("#f-status", "")
    page.fill("#f-function", "list_orders")
    page.wait_for_function("document.querySelectorAll('#traces tbody tr[data-trace-id]').length === 4")
    page.fill("#f-function", "")
    page.wait_for_function("document.querySelectorAll('#traces tbody tr[data-trace-id]').length === 6")

    page.locator(f"tr[data-trace-id='{ORDER_TRACE}']").click()
    page.locator("#waterfall .wf-row").first.wait_for()
    spans = page.locator("#waterfall .wf-row")
    assert spans.count() == 16
    assert page.locator("#waterfall .wf-row[data-kind='db']").count() == 10
    assert page.locator("#waterfall .wf-row .tag.n1").count() == 6
    assert page.locator("#waterfall .wf-row .tag.slow").count() == 1
    assert page.locator("#waterfall .wf-row .tag.async").count() == 1
    labels = [spans.nth(i).locator(".name").inner_text() for i in range(spans.count())]
    assert labels[0] == "POST /orders" and labels.index("async → send_invoice") < labels.index("send_invoice")
    assert page.locator("#trace-id").inner_text() == ORDER_TRACE
    assert "null" not in page.locator("#view").inner_text()
    assert "CREATE INDEX CONCURRENTLY" in page.locator("#index-panel pre.ddl").inner_text()
    assert "products" in page.locator("#n1-panel").inner_text()
    bar = page.locator("#waterfall .wf-row[data-kind='gateway'] .wf-bar").bounding_box()
    attempt = page.locator("#waterfall .wf-row:has-text('async → send_invoice') .wf-bar").bounding_box()
    assert attempt["x"] > bar["x"] + bar["width"]  # the async branch runs after the response was sent
    page.locator("#waterfall .wf-row[data-kind='db']").first.click()
    assert "sql_shape" in page.locator("#span-detail").inner_text()
    page.screenshot(path=str(ARTIFACTS / "dashboard-trace.png"), full_page=True)

    page.goto(base_url + f"/_flux/#/trace/{FAILED_TRACE}")
    page.locator("#waterfall .wf-row").first.wait_for()
    assert page.locator("#waterfall .wf-row .name.err").count() == 2
    assert "functions/refund/index.ts:14" in page.locator("#trace-error").inner_text()
    page.locator("#waterfall .wf-row[data-kind='function']").click()
    assert "functions/refund/index.ts" in page.locator("#span-detail").inner_text()
    page.screenshot(path=str(ARTIFACTS / "dashboard-error.png"), full_page=True)

    page.goto(base_url + "/_flux/#/logs")
    page.locator("#logs tbody tr").first.wait_for()
    assert page.locator("#logs tbody tr").count() == 5
    page.select_option("#l-level", "warn")
    page.wait_for_function("document.querySelectorAll('#logs tbody tr').length === 2")
    page.check("#l-follow")
    page.screenshot(path=str(ARTIFACTS / "dashboard-logs.png"), full_page=True)

    page.goto(base_url + "/_flux/#/schema")
    page.locator("svg.schema g.tbl").first.wait_for()
    assert page.locator("svg.schema g.tbl").count() == 4
    assert page.locator("svg.schema path.edge").count() == 3
    assert page.locator("svg.schema g.suggested").count() == 2
    page.screenshot(path=str(ARTIFACTS / "dashboard-schema.png"), full_page=True)

    page.goto(base_url + "/_flux/#/suggestions")
    page.locator("#n1-panel .finding .title").first.wait_for()
    assert "products" in page.locator("#n1-panel").inner_text()
    page.screenshot(path=str(ARTIFACTS / "dashboard-suggestions.png"), full_page=True)
    assert page.problems == []
