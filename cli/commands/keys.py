"""`flux keys create|list|revoke`: API keys for routes with ``"auth": "api_key"``.

A key is printed once, at creation; the store keeps only its hash and a short
prefix. The key itself goes to stdout and everything else to stderr, so
``KEY=$(flux keys create --name ci)`` captures just the key.

Local keys live in ``<project>/.flux/keys.db`` (what ``flux dev`` checks).
``--table`` (or ``FLUX_KEYS_TABLE``) manages a deployed stack's DynamoDB key
table instead, which is also how the first admin key of a deployment is made.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.output import console, err_console, fail, print_json
from functions.gateway.errors import GatewayError
from functions.gateway.keys import SCOPES, ApiKeyStore

app = typer.Typer(help="Manage API keys (stored as hashes; each key is shown once).", no_args_is_help=True)

ProjectDir = Annotated[Path, typer.Option("--project-dir", "-C", help="Project folder (default: current).")]
TableName = Annotated[str | None, typer.Option("--table", envvar="FLUX_KEYS_TABLE",
                                               help="DynamoDB key table of a deployed stack instead of local.")]
Region = Annotated[str | None, typer.Option("--region", help="AWS region of --table.")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _store(project_dir: Path, table: str | None, region: str | None) -> ApiKeyStore:
    try:
        if table:
            from functions.gateway.keys_dynamodb import DynamoApiKeyStore
            from functions.shared.aws_clients import client as aws_client

            return DynamoApiKeyStore(table, aws_client("dynamodb", region=region))
        from functions.gateway.keys_sqlite import open_project_key_store

        root = project_dir.resolve()
        if not (root / "flux.json").is_file():
            fail(f"{root} is not a Flux project (no flux.json)", hint="run this in a project or pass -C DIR")
        return open_project_key_store(root)
    except GatewayError as exc:
        fail(exc.message)


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


@app.command()
def create(name: Annotated[str, typer.Option("--name", "-n", help="A name for the key, e.g. ci or mobile-app.")],
           scope: Annotated[str, typer.Option("--scope", help="invoke (call functions) or admin (also the "
                                                              "observability API).")] = "invoke",
           project_dir: ProjectDir = Path("."), table: TableName = None, region: Region = None,
           as_json: AsJson = False) -> None:
    """Create a key and print it once."""
    if scope not in SCOPES:
        fail(f"--scope must be one of: {', '.join(SCOPES)}")
    store = _store(project_dir, table, region)
    try:
        record, key = store.create(name, scope)
    except GatewayError as exc:
        fail(exc.message)
    warning = "This is the only time the key is shown; Flux stores only its hash. Save it now."
    if as_json:
        print_json({"name": record.name, "scope": record.scope, "prefix": record.prefix,
                    "created_at": record.created_at, "key": key, "warning": warning})
        return
    err_console.print(f"[green]created[/] API key [bold]{record.name}[/] (scope: {record.scope})")
    typer.echo(key)
    err_console.print(f"[yellow]{warning}[/]")


@app.command("list")
def list_keys(project_dir: ProjectDir = Path("."), table: TableName = None, region: Region = None,
              as_json: AsJson = False) -> None:
    """List keys: name, prefix, scope, created, last used, revoked (never the keys)."""
    try:
        records = _store(project_dir, table, region).list()
    except GatewayError as exc:
        fail(exc.message)
    if as_json:
        print_json([record.public() for record in records])
        return
    if not records:
        console.print("no API keys; create one with: flux keys create --name NAME")
        return
    grid = Table("name", "prefix", "scope", "created", "last used", "revoked")
    for record in records:
        grid.add_row(record.name, record.prefix + "…", record.scope, _when(record.created_at),
                     _when(record.last_used_at), "yes" if record.revoked else "no")
    console.print(grid)


@app.command()
def revoke(name: Annotated[str, typer.Argument(help="Name of the key to revoke.")],
           project_dir: ProjectDir = Path("."), table: TableName = None, region: Region = None,
           as_json: AsJson = False) -> None:
    """Revoke a key: requests with it are refused from the next request on."""
    try:
        revoked = _store(project_dir, table, region).revoke(name)
    except GatewayError as exc:
        fail(exc.message)
    if as_json:
        print_json({"name": name, "revoked": revoked})
    if not revoked:
        fail(f"no API key named {name!r}")
    if not as_json:
        console.print(f"[green]revoked[/] {name}")
