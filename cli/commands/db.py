"""``flux db migrate | schema | suggest``: thin commands over the engine's migrations and advisor.

``schema`` and ``suggest`` find their data as every other CLI command does (DESIGN §4
"CLI"): ``--api-url``, then ``FLUX_API_URL``, then the hosted API of a ``flux login``
(unless ``-C`` names a project), then the project in the current directory — its
running ``flux dev`` over HTTP, or else its database directly (``DATABASE_URL``, flux.json
``database.url``, or the embedded server under ``.flux/pg``, started for the command and
stopped after it) with the recent traces of ``.flux/traces.db``. Outside a project with no
API configured they say so instead of inspecting an empty directory. Without ``--stage``,
``migrate`` works on the project's files and local database.

``flux db migrate --stage <s>`` migrates a deployed stage instead: it invokes that
stage's engine Lambda (infra/remote.py), the same call ``flux deploy`` makes after a
deployment, because the stage's database is not reachable from outside its VPC.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli.client import (
    ApiClient,
    ApiError,
    HttpApiClient,
    credentials_path,
    find_project,
    load_credentials,
    resolve_client,
    running_dev_server,
)
from functions.engine.advice import PostgresAdvice
from functions.engine.locate import DatabaseLocation, embedded_data_dir, locate_database
from functions.engine.migrations import apply_migrations
from functions.shared.errors import FluxError
from functions.shared.manifest import Observability, ProjectConfig
from functions.shared.spans import Span

app = typer.Typer(help="Database: apply migrations, show the schema graph, suggest indexes.", no_args_is_help=True)

ProjectDir = typer.Option(Path("."), "--project-dir", "-C", help="The Flux project directory.")
FoundProjectDir = typer.Option(None, "--project-dir", "-C", help="The Flux project directory (default: the one "
                                                                  "holding the current directory).")
ApiUrl = typer.Option(None, "--api-url", help="API base URL (overrides FLUX_API_URL and login).")
JsonOutput = typer.Option(False, "--json", help="Print machine-readable JSON.")
StageOption = typer.Option(None, "--stage", "-s", help="A deployed stage: migrate through its engine Lambda.")
RegionOption = typer.Option(None, "--region", help="AWS region of the stage (default: boto3's configuration).")

out = Console()
err = Console(stderr=True)


@app.command()
def migrate(project_dir: Path = ProjectDir, json_output: bool = JsonOutput, stage: str | None = StageOption,
            region: str | None = RegionOption) -> None:
    """Apply pending migrations from schema/*.sql in filename order (locally, or on a deployed --stage)."""
    if stage is not None:
        with _failures(json_output):
            report = _migrate_stage(project_dir, stage, region, json_output)
    else:
        with _failures(json_output), _database(project_dir, json_output) as db:
            report = apply_migrations(db.dsn, project_dir / "schema", app_role=db.app_role).to_dict()
    if json_output:
        _print_json(report)
        return
    print_report(report, out)


def print_report(report: dict[str, Any], console: Console) -> None:
    """One line per applied (or recorded but missing) file, then the counts; shared with `flux deploy`."""
    for name in report.get("applied", []):
        console.print(f"[green]applied[/green] {escape(name)}")
    for name in report.get("missing_files", []):
        console.print(f"[yellow]recorded but missing on disk[/yellow] {escape(name)}")
    applied, already = len(report.get("applied", [])), len(report.get("already_applied", []))
    console.print(f"{applied} applied, {already} already applied ({float(report.get('duration_ms') or 0):.0f} ms)")
    if report.get("app_role"):
        console.print(f"application role {escape(str(report['app_role']))}: DML rights on every table, "
                      "nothing else (user code connects as it)")


def _migrate_stage(project_dir: Path, stage: str, region: str | None, json_output: bool) -> dict[str, Any]:
    from functions.shared.manifest import load_project
    from infra.plan import stack_name
    from infra.remote import migrate_stage, stack_outputs

    name = stack_name(load_project(project_dir).config.name, stage)
    outputs = stack_outputs(name, region=region)
    if json_output:
        return migrate_stage(outputs, name, region=region)
    with err.status(f"migrating {name} through its engine function..."):
        return migrate_stage(outputs, name, region=region)


@app.command()
def schema(project_dir: Path | None = FoundProjectDir, api_url: str | None = ApiUrl, json_output: bool = JsonOutput,
           traces: int = typer.Option(200, "--traces", min=0, max=1000,
                                      help="Recent traces whose queries feed the suggested indexes.")) -> None:
    """Tables, columns with types, primary and foreign keys, indexes and suggested indexes."""
    with _failures(json_output):
        client, root = _source(api_url, project_dir)
        if client is not None:
            graph = _from_api(client, "/schema/graph", {}, json_output)
        else:
            with _database(root, json_output) as db:
                settings = _observability(root)
                spans = _recent_spans(root, traces)
                advice = PostgresAdvice(db.dsn, slow_query_ms=settings.slow_query_ms,
                                        n_plus_one_threshold=settings.n_plus_one_threshold,
                                        recent_spans=lambda: spans)
                graph = advice.schema_graph()
    if json_output:
        _print_json(graph)
        return
    if not graph["tables"]:
        out.print("No tables yet. Add a migration under schema/ and run `flux db migrate`.")
    for table in graph["tables"]:
        _print_table(table)
    _print_suggestions(graph["suggested_indexes"])


@app.command()
def suggest(project_dir: Path | None = FoundProjectDir, api_url: str | None = ApiUrl,
            json_output: bool = JsonOutput,
            traces: int = typer.Option(200, "--traces", min=1, max=1000, help="How many recent traces to read.")
            ) -> None:
    """Index suggestions from recent traces, each checked with EXPLAIN before it is shown."""
    with _failures(json_output):
        client, root = _source(api_url, project_dir)
        if client is not None:
            found = _from_api(client, "/suggestions", {"limit": min(traces, 200)}, json_output)
            suggestions, scanned = list(found.get("suggested_indexes") or []), int(found.get("traces_scanned") or 0)
        else:
            with _database(root, json_output) as db:
                settings = _observability(root)
                spans = _recent_spans(root, traces)
                advice = PostgresAdvice(db.dsn, slow_query_ms=settings.slow_query_ms,
                                        n_plus_one_threshold=settings.n_plus_one_threshold)
                suggestions, scanned = advice.suggest_indexes(spans), len(spans)
    if json_output:
        _print_json(suggestions)
        return
    if not scanned:
        out.print("No traces yet: run `flux dev` and send some requests first.")
    _print_suggestions(suggestions)


# -- helpers ---------------------------------------------------------------------------------------------

def _source(api_url: str | None, project_dir: Path | None) -> tuple[ApiClient | None, Path]:
    """An API to ask, or None and the project whose database to read directly."""
    env = os.environ
    if api_url or env.get("FLUX_API_URL") or (project_dir is None and load_credentials(credentials_path(env))):
        try:
            return resolve_client(api_url=api_url, project_dir=project_dir), Path(".")
        except ApiError as exc:
            raise NoProject(exc.message) from None
    root = project_dir.resolve() if project_dir is not None else find_project(Path.cwd())
    if root is None:
        raise NoProject("no Flux project here (no flux.json in this directory or above): run this inside a "
                        "project, pass -C DIR or --api-url URL, set FLUX_API_URL, or run `flux login`")
    dev_url = running_dev_server(root)
    if dev_url:
        return HttpApiClient(dev_url, description=f"flux dev at {dev_url}"), root
    return None, root


def _from_api(client: ApiClient, path: str, params: dict[str, Any], json_output: bool) -> Any:
    try:
        if json_output:
            return client.get(path, params)
        with err.status(f"Asking {client.description} ..."):
            return client.get(path, params)
    except ApiError as exc:
        hint = " (run `flux login --api-url URL --key KEY` with an admin key)" if exc.status == 401 else ""
        raise NoProject(f"{client.description}: {exc.message}{hint}") from None
    finally:
        client.close()


class NoProject(FluxError):
    """Nothing to inspect: no API configured and no project here, or the API refused."""

    status, code = 400, "no_api"


@contextmanager
def _failures(json_output: bool) -> Iterator[None]:
    try:
        yield
    except FluxError as exc:
        if json_output:
            _print_json({"error": exc.code, "message": exc.message})
        else:
            err.print(f"[red]error[/red] ({exc.code}): {exc.message}")
        raise typer.Exit(1) from None


@contextmanager
def _database(project_dir: Path, json_output: bool) -> Iterator[DatabaseLocation]:
    needs_start = not (embedded_data_dir(project_dir) / "postmaster.pid").exists()
    if needs_start and not json_output:
        with err.status("Starting the embedded Postgres under .flux/pg ..."):
            location = locate_database(project_dir)
    else:
        location = locate_database(project_dir)
    with location:
        yield location


def _observability(project_dir: Path) -> Observability:
    path = project_dir / "flux.json"
    if not path.is_file():
        return Observability()
    try:
        return ProjectConfig.model_validate(json.loads(path.read_text(encoding="utf-8"))).observability
    except ValueError:
        return Observability()


def _recent_spans(project_dir: Path, traces: int) -> list[Span]:
    path = project_dir / ".flux" / "traces.db"
    if traces <= 0 or not path.is_file():
        return []
    from functions.observability.sqlite_store import SqliteSpanStore

    store = SqliteSpanStore(path)
    try:
        spans: list[Span] = []
        for summary in store.list_traces(limit=traces):
            spans.extend(store.get_trace(summary.trace_id))
        return spans
    finally:
        store.close()


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def _print_table(table: dict[str, Any]) -> None:
    foreign = {c: f"→ {fk['ref_table']}.{fk['ref_columns'][i]}"
               for fk in table["foreign_keys"] for i, c in enumerate(fk["columns"])}
    kind = str(table.get("kind") or "table").replace("_", " ")
    over = f" over {', '.join(table['base_tables'])}" if table.get("base_tables") else ""
    about = f"{kind}{over}" if kind != "table" else f"~{table['row_estimate']} rows"
    view = Table(title=escape(f"{table['name']}  ({about})"), title_justify="left", expand=False)
    view.add_column("column")
    view.add_column("type")
    view.add_column("null")
    view.add_column("key")
    for column in table["columns"]:
        key = "PK" if column["name"] in table["primary_key"] else ""
        key = " ".join(k for k in (key, foreign.get(column["name"], "")) if k)
        view.add_row(column["name"], column["type"], "yes" if column["nullable"] else "no", key)
    out.print(view)
    for index in table["indexes"]:
        kind = "primary" if index["primary"] else ("unique" if index["unique"] else "index")
        out.print(f"  {kind} [bold]{index['name']}[/bold] {_index_keys(index)}", markup=True, highlight=False)
    out.print()


def _index_keys(index: dict[str, Any]) -> str:
    """``(user_id, created_at DESC)``, plus the method and predicate when pg_get_indexdef gives them."""
    definition = str(index.get("definition") or "")
    if " USING " in definition:
        method_and_keys = definition.split(" USING ", 1)[1]
        method, _, keys = method_and_keys.partition(" ")
        return escape(keys if method == "btree" else f"{method} {keys}")
    descending = index.get("descending") or []
    keys = [c + (" DESC" if i < len(descending) and descending[i] else "") for i, c in enumerate(index["columns"])]
    return escape(f"({', '.join(keys)})")


def _print_suggestions(suggestions: list[dict[str, Any]]) -> None:
    if not suggestions:
        out.print("No index suggestions: no slow or repeated query would get cheaper with a new index.")
        return
    out.print(f"[bold]{len(suggestions)} suggested index{'es' if len(suggestions) > 1 else ''}[/bold]")
    for s in suggestions:
        out.print(f"  [cyan]{s['ddl']}[/cyan]")
        out.print(f"    estimated cost {s['est_cost_before']} → {s['est_cost_after']}: {s['reason']}")
