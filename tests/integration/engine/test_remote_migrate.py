"""`flux db migrate --stage` and `flux deploy`'s migration step: the CLI invokes the stage's engine Lambda.

The Lambda Invoke API is played by a small HTTP server on 127.0.0.1 that runs the real
engine entry point (functions/aws/entry_engine.py) on a real Postgres; the CLI finds it
through boto3's standard ``AWS_ENDPOINT_URL_LAMBDA`` and the function name through the
stack outputs file (``FLUX_STACK_OUTPUTS``), as the deployed test tier does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from cli.commands.db import app
from functions.aws.entry_engine import make_handler

pytestmark = pytest.mark.integration

runner = CliRunner()


class LambdaInvokeApi(ThreadingHTTPServer):
    """``POST /2015-03-31/functions/<name>/invocations`` → the handler registered under that name."""

    def __init__(self, functions: dict[str, Any]) -> None:
        self.functions = functions
        self.invocations: list[tuple[str, Any]] = []
        super().__init__(("127.0.0.1", 0), _InvokeHandler)


class _InvokeHandler(BaseHTTPRequestHandler):
    server: LambdaInvokeApi

    def do_POST(self) -> None:
        parts = self.path.split("/")
        name = parts[3] if len(parts) > 4 and parts[4] == "invocations" else ""
        event = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"null")
        self.server.invocations.append((name, event))
        handler = self.server.functions.get(name)
        if handler is None:
            body, status, headers = {"Type": "User", "message": f"Function not found: {name}"}, 404, {
                "x-amzn-ErrorType": "ResourceNotFoundException"}
        else:
            body, status, headers = handler(event, None), 200, {}
        data = json.dumps(body).encode()
        self.send_response(status)
        for key, value in {"content-type": "application/json", **headers}.items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stage(pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, LambdaInvokeApi]]:
    project = tmp_path / "app"
    (project / "schema").mkdir(parents=True)
    (project / "flux.json").write_text(json.dumps({"name": "remote"}))
    (project / "schema" / "001_things.sql").write_text("CREATE TABLE things (id serial PRIMARY KEY, name text);")
    engine = make_handler(env={"DATABASE_URL": pg_dsn, "FLUX_SCHEMA_DIR": str(project / "schema")})
    server = LambdaInvokeApi({"flux-remote-dev-engine": engine})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"flux-remote-dev": {"EngineFunctionName": "flux-remote-dev-engine"}}))
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "FLUX_STACK_OUTPUTS": str(outputs),
                       "AWS_ENDPOINT_URL_LAMBDA": f"http://127.0.0.1:{server.server_address[1]}"}.items():
        monkeypatch.setenv(key, value)
    try:
        yield project, server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_db_migrate_stage_invokes_the_engine_function(stage: Any, pg_dsn: str) -> None:
    project, server = stage
    first = runner.invoke(app, ["migrate", "-C", str(project), "--stage", "dev", "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["applied"] == ["001_things.sql"]
    assert server.invocations == [("flux-remote-dev-engine", {"action": "migrate"})]
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT to_regclass('public.things') IS NOT NULL").fetchone() == (True,)
    again = runner.invoke(app, ["migrate", "-C", str(project), "--stage", "dev"])
    assert again.exit_code == 0, again.output
    assert "0 applied, 1 already applied" in again.output


def test_a_failing_migration_is_a_failed_command(stage: Any) -> None:
    project, _server = stage
    (project / "schema" / "002_bad.sql").write_text("CREATE TABLE broken (id nosuchtype);")
    result = runner.invoke(app, ["migrate", "-C", str(project), "--stage", "dev", "--json"])
    assert result.exit_code == 1
    assert "002_bad.sql" in json.loads(result.output)["message"]


def test_deploy_migrates_through_the_same_call(stage: Any) -> None:
    from cli.commands.deploy import _migrate

    _project, server = stage
    report = _migrate("flux-remote-dev", {"EngineFunctionName": "flux-remote-dev-engine"}, "us-east-1", quiet=True)
    assert report is not None  # the module's database may hold the file already from an earlier test
    assert report["applied"] + report["already_applied"] == ["001_things.sql"]
    assert _migrate("flux-remote-dev", {"ApiUrl": "https://x"}, "us-east-1", quiet=True) is None  # no database
    assert len(server.invocations) == 1
