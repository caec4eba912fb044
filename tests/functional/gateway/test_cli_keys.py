"""`flux keys create|list|revoke` against the project's SQLite store and a DynamoDB table (moto)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cli.commands.keys import app
from functions.gateway.keys import hash_key, looks_like_key
from functions.gateway.keys_sqlite import open_project_key_store

runner = CliRunner()


def test_create_prints_the_key_once_on_stdout_with_a_warning(project_dir: Path) -> None:
    result = runner.invoke(app, ["create", "--name", "ci", "-C", str(project_dir)])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert looks_like_key(key)
    assert "only time the key is shown" in result.stderr
    store = open_project_key_store(project_dir)
    assert store.authenticate(key).name == "ci"
    assert key not in (project_dir / ".flux" / "keys.db").read_bytes().decode("latin-1")

    listed = runner.invoke(app, ["list", "-C", str(project_dir)])
    assert listed.exit_code == 0
    assert "ci" in listed.stdout and key[:12] in listed.stdout
    assert key not in listed.stdout and key[12:] not in listed.stdout
    assert hash_key(key) not in listed.stdout


def test_json_output_and_revoke(project_dir: Path) -> None:
    created = runner.invoke(app, ["create", "--name", "ops", "--scope", "admin", "--json", "-C", str(project_dir)])
    assert created.exit_code == 0, created.output
    data = json.loads(created.stdout)
    assert data["scope"] == "admin" and looks_like_key(data["key"]) and "only time" in data["warning"]

    listed = json.loads(runner.invoke(app, ["list", "--json", "-C", str(project_dir)]).stdout)
    assert listed == [{"name": "ops", "prefix": data["key"][:12], "scope": "admin",
                       "created_at": listed[0]["created_at"], "last_used_at": None, "revoked": False}]

    revoked = runner.invoke(app, ["revoke", "ops", "-C", str(project_dir)])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    assert open_project_key_store(project_dir).authenticate(data["key"]) is None
    listed = json.loads(runner.invoke(app, ["list", "--json", "-C", str(project_dir)]).stdout)
    assert listed[0]["revoked"] is True


def test_errors_exit_non_zero(project_dir: Path, tmp_path: Path) -> None:
    assert runner.invoke(app, ["create", "--name", "ci", "-C", str(project_dir)]).exit_code == 0
    duplicate = runner.invoke(app, ["create", "--name", "ci", "-C", str(project_dir)])
    assert duplicate.exit_code == 1 and "already exists" in duplicate.stderr
    assert not re.search(r"flx_live_\S{43}", duplicate.stdout)
    bad_scope = runner.invoke(app, ["create", "--name", "x", "--scope", "root", "-C", str(project_dir)])
    assert bad_scope.exit_code == 1 and "--scope" in bad_scope.stderr
    bad_name = runner.invoke(app, ["create", "--name", "has space", "-C", str(project_dir)])
    assert bad_name.exit_code == 1
    missing = runner.invoke(app, ["revoke", "nobody", "-C", str(project_dir)])
    assert missing.exit_code == 1 and "nobody" in missing.stderr
    not_a_project = runner.invoke(app, ["list", "-C", str(tmp_path / "empty")])
    assert not_a_project.exit_code == 1 and "not a Flux project" in " ".join(not_a_project.stderr.split())
    assert not (tmp_path / "empty" / ".flux").exists()


def test_table_option_manages_the_dynamodb_store(dynamodb: Any, tmp_path: Path) -> None:
    created = runner.invoke(app, ["create", "--name", "first-admin", "--scope", "admin", "--table", "flux-keys",
                                  "--region", "us-east-1", "--json"])
    assert created.exit_code == 0, created.output
    key = json.loads(created.stdout)["key"]
    items = repr(dynamodb.scan(TableName="flux-keys")["Items"])
    assert hash_key(key) in items and key not in items
    listed = runner.invoke(app, ["list", "--table", "flux-keys", "--region", "us-east-1", "--json"])
    assert [k["name"] for k in json.loads(listed.stdout)] == ["first-admin"]
    assert runner.invoke(app, ["revoke", "first-admin", "--table", "flux-keys", "--region", "us-east-1"]).exit_code == 0
