"""Hosted mode: the observability Lambda's API over DynamoDB (moto) behind uvicorn, reached by `flux login`.

The same seeded trace read from SQLite in process and from DynamoDB over HTTP must
come back identical: one API, two stores.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from observability_seed import ORDER_TRACE, seed
from typer.testing import CliRunner

from cli.commands.observe import app
from functions.aws import entry_observability as lambda_handler
from functions.gateway.dynamo_schema import KEYS_TABLE, create_table
from functions.gateway.keys_dynamodb import DynamoApiKeyStore
from functions.observability.asgi import asgi_app
from functions.observability.dynamo_store import DynamoSpanStore
from functions.observability.sqlite_store import SqliteSpanStore
from functions.shared.apigw import HttpRequest, build_event
from functions.shared.spans import now_us

runner = CliRunner()
ENV = {"SPANS_TABLE": "flux-spans", "KEYS_TABLE": "flux-keys", "SPANS_SHARDS": "4"}


@pytest.fixture
def hosted(dynamo_client: Any, tmp_path: Path, serve: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("FLUX_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("FLUX_API_URL", raising=False)
    monkeypatch.delenv("FLUX_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    create_table(dynamo_client, "flux-keys", KEYS_TABLE)
    keys = DynamoApiKeyStore("flux-keys", dynamo_client)
    _, admin = keys.create("ops", "admin")
    _, invoke = keys.create("web", "invoke")
    now = now_us()
    seed(DynamoSpanStore(dynamo_client, "flux-spans", shards=4), now)
    local = SqliteSpanStore(tmp_path / "local" / ".flux" / "traces.db")
    seed(local, now)
    local.close()
    (tmp_path / "local" / "flux.json").write_text('{"name": "shop"}')
    api = lambda_handler.build_api(ENV, client=dynamo_client)
    with serve(asgi_app(api)) as url:
        yield {"url": url, "admin": admin, "invoke": invoke, "local": tmp_path / "local", "config": tmp_path / "config"}


def test_login_then_trace_shows_the_same_trace_as_local(hosted: dict[str, Any]) -> None:
    result = runner.invoke(app, ["login", "--api-url", hosted["url"], "--key", hosted["admin"]])
    assert result.exit_code == 0, result.output
    assert "logged in to" in result.output
    credentials = hosted["config"] / "credentials.json"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert json.loads(credentials.read_text()) == {"api_url": hosted["url"], "key": hosted["admin"]}

    remote = runner.invoke(app, ["trace", ORDER_TRACE, "--json"])
    assert remote.exit_code == 0, remote.output
    local = runner.invoke(app, ["trace", ORDER_TRACE, "--json", "--project-dir", str(hosted["local"])])
    assert json.loads(remote.output) == json.loads(local.output)
    human = runner.invoke(app, ["trace", ORDER_TRACE])
    assert "async → send_invoice" in human.output and "select products [N+1]" in human.output
    tail = runner.invoke(app, ["tail", "--count", "6", "--json"])
    assert len(tail.output.splitlines()) == 6


def test_wrong_or_non_admin_key_is_refused(hosted: dict[str, Any]) -> None:
    for key in ("flx_live_" + "x" * 43, hosted["invoke"], "not-a-key"):
        result = runner.invoke(app, ["login", "--api-url", hosted["url"], "--key", key])
        assert result.exit_code == 1 and "refused the key (401 unauthorized)" in result.output
    assert not (hosted["config"] / "credentials.json").exists()
    response = httpx.get(hosted["url"] + "/_flux/api/traces", headers={"x-api-key": hosted["invoke"]})
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    assert response.json()["request_id"] == response.headers["x-request-id"]
    assert httpx.get(hosted["url"] + "/_flux/api/traces").status_code == 401
    ok = httpx.get(hosted["url"] + "/_flux/api/traces", headers={"authorization": f"Bearer {hosted['admin']}"})
    assert ok.status_code == 200 and ok.json()["count"] == 6
    assert httpx.get(hosted["url"] + "/_flux/").status_code == 200  # the page itself holds no data


def test_lambda_entry_point_serves_an_api_gateway_event(dynamo_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(lambda_handler, "_api", None)
    create_table(dynamo_client, "flux-keys", KEYS_TABLE)
    _, admin = DynamoApiKeyStore("flux-keys", dynamo_client).create("ops", "admin")
    seed(DynamoSpanStore(dynamo_client, "flux-spans", shards=4))
    event = build_event(HttpRequest("GET", f"/_flux/api/traces/{ORDER_TRACE}", "", (("x-api-key", admin),)),
                        route_key="GET /_flux/{proxy+}")
    result = lambda_handler.handler(event, None)
    assert result["statusCode"] == 200 and json.loads(result["body"])["span_count"] == 16
    event["headers"]["x-api-key"] = "wrong"
    assert lambda_handler.handler(event, None)["statusCode"] == 401


def test_without_a_keys_table_every_api_call_is_refused(dynamo_client: Any) -> None:
    api = lambda_handler.build_api({"SPANS_TABLE": "flux-spans"}, client=dynamo_client)
    event = build_event(HttpRequest("GET", "/_flux/api/traces"), route_key="$default")
    assert api.handle(event)["statusCode"] == 401
