"""`flux secrets set|list|delete`: the store `ctx.secrets.get` reads. Values are never printed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.output import console, fail, print_json
from functions.shared.secrets import SecretsError, SecretsStore, check_name

app = typer.Typer(help="Manage secrets that functions read with ctx.secrets.get(name).", no_args_is_help=True)
ProjectDir = Annotated[Path, typer.Option("--project-dir", "-C", help="Project folder (default: current).")]
Stage = Annotated[str | None, typer.Option("--stage", help="AWS stage (Secrets Manager) instead of local.")]


def _store(project_dir: Path, stage: str | None) -> SecretsStore:
    if stage:
        from functions.runtime.aws_secrets import SecretsManagerStore
        from functions.shared.manifest import load_project

        return SecretsManagerStore.for_stage(load_project(project_dir).config.name, stage)
    from functions.local.stack import StatePaths
    from functions.runtime.local_secrets import SqliteSecretsStore

    root = project_dir.resolve()
    if not (root / "flux.json").exists():
        fail(f"{root} is not a Flux project (no flux.json)")
    return SqliteSecretsStore(StatePaths.of(root).secrets)


@app.command("set")
def set_secret(name: Annotated[str, typer.Argument(help="Secret name, e.g. STRIPE_KEY.")],
               value: Annotated[str | None, typer.Argument(help="Value; omit to type it or pipe it in.")] = None,
               project_dir: ProjectDir = Path("."), stage: Stage = None,
               as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Set a secret (the value is never printed back)."""
    try:
        check_name(name)
    except SecretsError as exc:
        fail(exc.message)
    if value is None:
        value = typer.prompt(f"value for {name}", hide_input=True) if sys.stdin.isatty() \
            else sys.stdin.read().rstrip("\n")
    if not value:
        fail("the value is empty")
    _store(project_dir, stage).set(name, value)
    if as_json:
        print_json({"name": name, "set": True})
    else:
        console.print(f"[green]set[/] {name}")


@app.command("list")
def list_secrets(project_dir: ProjectDir = Path("."), stage: Stage = None,
                 as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List secret names (never values)."""
    import datetime as dt

    items = _store(project_dir, stage).list()
    if as_json:
        print_json([{"name": i.name, "updated_at": i.updated_at} for i in items])
        return
    if not items:
        console.print("no secrets; add one with: flux secrets set NAME")
    for item in items:
        when = dt.datetime.fromtimestamp(item.updated_at, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        console.print(f"{item.name:<32} updated {when}")


@app.command("delete")
def delete_secret(name: str, project_dir: ProjectDir = Path("."), stage: Stage = None,
                  as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Delete a secret."""
    deleted = _store(project_dir, stage).delete(name)
    if as_json:
        print_json({"name": name, "deleted": deleted})
    if not deleted:
        fail(f"no secret named {name!r}")
    if not as_json:
        console.print(f"[green]deleted[/] {name}")
