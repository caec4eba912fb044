"""The walking skeleton over HTTP: `flux init`, `flux dev`, curl, hot reload, Ctrl-C."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import flux, processes_mentioning

pytestmark = pytest.mark.e2e


@pytest.fixture
def project(tmp_path: Path) -> Path:
    result = flux("init", str(tmp_path / "my-app"))
    assert result.returncode == 0, result.stderr
    root = tmp_path / "my-app"
    extra = {
        "spin": ({"timeout_ms": 800}, "export default async function h(i) { if (i.quick) return {ok: true}; "
                                      "while (true) {} }"),
        "die": ({}, "export default async function h(i) { if (i.quick) return {ok: true}; Deno.exit(1); }"),
        "env": ({}, "export default async function h() { return Deno.env.get('HOME'); }"),
        "write": ({}, "export default async function h() { Deno.writeTextFileSync('/tmp/flux-e2e-x', 'x'); }"),
        "net": ({}, "export default async function h(i) { return (await fetch(i.url)).status; }"),
    }
    for name, (config, source) in extra.items():
        (root / "functions" / name).mkdir(parents=True)
        (root / "functions" / name / "index.ts").write_text(source)
        (root / "functions" / name / "flux.json").write_text(json.dumps(config))
    return root


def test_init_then_dev_serves_hello_with_request_id(project, dev_server_factory):
    assert (project / "flux.d.ts").exists()
    server = dev_server_factory(project)
    response = server.client.post("/hello", content=b'{"name":"Ada"}')
    assert response.status_code == 200
    assert response.json()["message"] == "Hello, Ada!"
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 32
    output = server.output()
    assert "POST   http://127.0.0.1" in output and "/hello" in output
    time.sleep(0.3)
    assert request_id in server.output()


def test_timeouts_crashes_and_sandbox_denials_over_http(project, dev_server_factory):
    server = dev_server_factory(project)
    client = server.client
    started = time.monotonic()
    response = client.post("/spin", json={})
    assert response.status_code == 504
    assert response.json()["error"] == "function_timeout"
    assert time.monotonic() - started < 5
    assert client.post("/spin", json={"quick": True}).status_code == 200
    response = client.post("/die", json={})
    assert response.status_code == 502 and response.json()["error"] == "runtime_crashed"
    assert client.post("/die", json={"quick": True}).status_code == 200
    for path, body in (("/env", {}), ("/write", {}), ("/net", {"url": f"{server.url}/hello"})):
        response = client.post(path, json=body)
        assert response.status_code == 500, (path, response.text)
        assert response.json()["error"] == "function_error"
        assert response.headers["x-request-id"] == response.json()["request_id"]
    assert not Path("/tmp/flux-e2e-x").exists()
    assert client.post("/hello", json={}).status_code == 200


def test_bad_requests_have_standard_bodies(project, dev_server_factory):
    server = dev_server_factory(project)
    client = server.client
    cases = [
        (client.post("/hello", content=b"{nope"), 400, "invalid_json"),
        (client.get("/missing"), 404, "route_not_found"),
        (client.post("/hello", content=b'"' + b"x" * (1024 * 1024 + 10) + b'"'), 413, "payload_too_large"),
    ]
    for response, status, code in cases:
        assert response.status_code == status
        body = response.json()
        assert body["error"] == code
        assert body["request_id"] == response.headers["x-request-id"]
        assert set(body) == {"error", "message", "request_id"}


def test_hot_reload_picks_up_changes(project, dev_server_factory):
    server = dev_server_factory(project)
    assert server.client.post("/hello", json={"name": "A"}).json()["message"] == "Hello, A!"
    source = project / "functions" / "hello" / "index.ts"
    source.write_text(source.read_text().replace("Hello, ", "Howdy, "))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.client.post("/hello", json={"name": "A"}).json().get("message") == "Howdy, A!":
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"reload not picked up:\n{server.output()}")
    (project / "functions" / "added").mkdir()
    (project / "functions" / "added" / "index.ts").write_text("export default async () => ({added: true});")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        response = server.client.post("/added", json={})
        if response.status_code == 200:
            assert response.json() == {"added": True}
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"new function not picked up:\n{server.output()}")


def test_invalid_flux_json_is_reported_before_start(project):  # fails before any database is touched
    (project / "functions" / "hello" / "flux.json").write_text('{"route": "/hello", "timeout": 5}')
    result = flux("dev", str(project), "--port", "1")
    assert result.returncode == 1
    assert "functions/hello/flux.json" in result.stderr and "timeout" in result.stderr


def test_ctrl_c_leaves_no_process_behind(project, dev_server_factory):
    server = dev_server_factory(project)
    assert server.client.post("/hello", json={}).status_code == 200
    marker = str(project / "functions")
    assert processes_mentioning(marker), "expected warm deno workers while serving"
    assert server.stop() == 0
    deadline = time.monotonic() + 5
    while processes_mentioning(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_mentioning(marker) == []
    assert not (project / ".flux" / "dev.json").exists()


def test_invoke_and_secrets_cli(project, dev_server_factory, fresh_database_url):
    result = flux("secrets", "set", "API_TOKEN", "-C", str(project), input="tok-123456\n")
    assert result.returncode == 0, result.stderr
    listed = flux("secrets", "list", "-C", str(project), "--json")
    assert json.loads(listed.stdout)[0]["name"] == "API_TOKEN"
    assert "tok-123456" not in listed.stdout
    offline = flux("invoke", "hello", "--data", '{"name":"Cy"}', "-C", str(project), "--json",
                   env={"DATABASE_URL": fresh_database_url})
    assert offline.returncode == 0, offline.stderr
    assert json.loads(offline.stdout)["body"]["message"] == "Hello, Cy!"
    server = dev_server_factory(project)
    online = flux("invoke", "hello", "--data", '{"name":"Di"}', "-C", str(project), "--json")
    payload = json.loads(online.stdout)
    assert payload["status"] == 200 and payload["body"]["message"] == "Hello, Di!"
    time.sleep(0.3)
    assert payload["request_id"] in server.output()
    assert flux("secrets", "delete", "API_TOKEN", "-C", str(project)).returncode == 0
    assert flux("secrets", "delete", "API_TOKEN", "-C", str(project)).returncode == 1


def test_a_change_under_lib_reloads_the_functions_that_import_it(project, dev_server_factory):
    (project / "lib").mkdir(exist_ok=True)
    (project / "lib" / "greeting.ts").write_text('export const GREETING = "Hi";\n')
    (project / "functions" / "greets").mkdir()
    (project / "functions" / "greets" / "index.ts").write_text(
        'import { GREETING } from "../../lib/greeting.ts";\n'
        "export default async function h() { return { greeting: GREETING }; }\n")
    server = dev_server_factory(project)
    assert server.client.post("/greets", json={}).json() == {"greeting": "Hi"}
    (project / "lib" / "greeting.ts").write_text('export const GREETING = "Hello";\n')
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.client.post("/greets", json={}).json().get("greeting") == "Hello":
            return
        time.sleep(0.2)
    pytest.fail(f"lib/ change not picked up:\n{server.output()}")
