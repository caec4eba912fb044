"""``flux queue``: stats, dead-letter listing and replay for the local queue (``<project>/.flux/queue.db``).

The commands read and write the SQLite file directly, so they work whether or not
``flux dev`` is running; a running dispatcher picks a replayed job up at its next
poll, a stopped one at its next start.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.output import escape
from functions.queue_consumer.errors import JobNotFound, QueueError
from functions.queue_consumer.ports import DlqEntry
from functions.queue_consumer.sqlite_queue import SqliteJobQueue
from functions.shared.errors import FluxError
from functions.shared.manifest import load_project

app = typer.Typer(help="Inspect the async job queue and its dead-letter queue.", no_args_is_help=True)
dlq_app = typer.Typer(help="Jobs that failed all their attempts.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")

ProjectDir = Annotated[Path, typer.Option("--project-dir", "-C", help="The Flux project (default: here).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]



def _out() -> Console:
    """Built per call so the terminal width (and COLUMNS) of this run is used."""
    return Console()


def queue_path(project_dir: Path) -> Path:
    return project_dir.resolve() / ".flux" / "queue.db"


def _open(project_dir: Path, *, must_exist: bool) -> SqliteJobQueue | None:
    path = queue_path(project_dir)
    if not path.is_file():
        if must_exist:
            _fail(f"no local queue at {path} (run `flux dev` in the project first)")
        return None
    return SqliteJobQueue(path)


def _fail(message: str) -> None:
    Console(stderr=True).print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False)
    raise typer.Exit(1)


def _async_functions(project_dir: Path) -> list[str]:
    """The project's async functions, so stats list them even before their first job."""
    try:
        project = load_project(project_dir)
    except (FluxError, OSError):
        return []
    return sorted(name for name, spec in project.functions.items() if spec.is_async)


def _entry_dict(entry: DlqEntry) -> dict[str, Any]:
    return {"id": entry.id, "function": entry.function, "attempts": entry.attempts, "last_error": entry.last_error,
            "trace_id": entry.trace_id, "enqueued_at_us": entry.message.enqueued_at_us,
            "replay_of": entry.message.replay_of, "payload": entry.message.payload}


@app.command()
def stats(project_dir: ProjectDir = Path("."), as_json: JsonFlag = False) -> None:
    """Per function: pending, in flight, done, failed attempts, in the DLQ."""
    queue = _open(project_dir, must_exist=False)
    functions = _async_functions(project_dir)
    try:
        counts = queue.stats(functions) if queue else {name: None for name in functions}
    except QueueError as exc:
        _fail(exc.message)
    finally:
        if queue:
            queue.close()
    rows = {name: (value.to_dict() if value else {"pending": 0, "in_flight": 0, "done": 0, "failed": 0, "dlq": 0})
            for name, value in counts.items()}
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        _out().print("no async functions and no jobs yet")
        return
    table = Table("function", "pending", "in flight", "done", "failed", "dlq")
    for name, row in rows.items():
        table.add_row(escape(name), *(str(row[k]) for k in ("pending", "in_flight", "done", "failed", "dlq")))
    _out().print(table)


@dlq_app.command("list")
def dlq_list(project_dir: ProjectDir = Path("."), as_json: JsonFlag = False,
             function: Annotated[str | None, typer.Option("--function", "-f", help="Only this function.")] = None,
             limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100) -> None:
    """Dead jobs: id, function, attempts, last error, trace id."""
    queue = _open(project_dir, must_exist=False)
    try:
        entries = queue.dlq_list(function=function, limit=limit) if queue else []
    finally:
        if queue:
            queue.close()
    if as_json:
        typer.echo(json.dumps([_entry_dict(e) for e in entries], indent=2, ensure_ascii=False))
        return
    if not entries:
        _out().print("the dead-letter queue is empty")
        return
    # One block per job rather than a table: the two 32-character ids must never be wrapped or
    # cut (they are pasted into `dlq replay` and `flux trace`), and the error gets a whole line.
    console = _out()
    for entry in entries:
        console.print(f"[bold]{escape(entry.id)}[/bold]  {escape(entry.function)}  attempts {entry.attempts}  "
                      f"trace {escape(entry.trace_id)}", highlight=False, soft_wrap=True)
        console.print(f"    {escape(entry.last_error or '(no error recorded)')}", highlight=False, markup=False)
    console.print(f"{len(entries)} job(s) in the dead-letter queue; `flux queue dlq replay <id>` runs one again",
                  highlight=False)


@dlq_app.command("replay")
def dlq_replay(job_id: Annotated[str, typer.Argument(help="The id shown by `flux queue dlq list`.")],
               project_dir: ProjectDir = Path("."), as_json: JsonFlag = False) -> None:
    """Enqueue a dead job again, in its original trace (same trace id, under the original enqueue span)."""
    queue = _open(project_dir, must_exist=True)
    assert queue is not None
    try:
        fresh = queue.dlq_replay(job_id)
    except JobNotFound as exc:
        _fail(exc.message)
    finally:
        queue.close()
    result = {"job_id": fresh.job_id, "replay_of": job_id, "function": fresh.function, "trace_id": fresh.trace_id}
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    _out().print(f"replayed {job_id} as job {fresh.job_id} of {fresh.function} in trace {fresh.trace_id}",
               highlight=False)
