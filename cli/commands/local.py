"""`flux init`, `flux dev`, `flux invoke`: thin wrappers over functions/local."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.output import console, err_console, fail, print_json
from cli.scaffold import ScaffoldError, create_project
from functions.shared.local_io import pid_alive
from functions.shared.manifest import ManifestError, load_project

ProjectDir = Annotated[Path, typer.Option("--project-dir", "-C", help="Project folder (default: current).")]


def init(directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")],
         name: Annotated[str | None, typer.Option(help="Project name (default: folder name).")] = None,
         as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Create a new Flux project with a working `hello` function."""
    try:
        files = create_project(directory, name)
    except ScaffoldError as exc:
        fail(str(exc))
    if as_json:
        print_json({"project": str(directory.resolve()), "files": [str(f) for f in files]})
        return
    console.print(f"[green]created[/] {directory}/")
    for path in files:
        console.print(f"  {path.relative_to(directory.resolve())}")
    console.print(f"\nnext:  flux dev {directory}\n       curl -X POST localhost:4000/hello -d '{{\"name\":\"Ada\"}}'")


def dev(directory: Annotated[Path, typer.Argument(help="Project folder.")] = Path("."),
        port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 4000,
        no_watch: Annotated[bool, typer.Option("--no-watch", help="Disable hot reload.")] = False,
        no_tracing: Annotated[bool, typer.Option("--no-tracing", help="Do not record spans and logs.")] = False,
        ) -> None:
    """Run the project locally: gateway on 127.0.0.1, warm Deno workers, hot reload."""
    from functions.local.devserver import run

    try:
        load_project(directory)
    except ManifestError as exc:
        err_console.print("[bold red]flux.json is invalid:[/]")
        for problem in exc.problems:
            err_console.print(f"  {problem}")
        raise typer.Exit(1) from None
    code = run(directory.resolve(), port=port, watch=not no_watch, tracing=False if no_tracing else None, out=_line)
    raise typer.Exit(code)


_flush_pending = False


def _line(text: str) -> None:
    """One plain write per request (rendering each line through rich cost the dev server ~15 % of its CPU).

    On the event loop, the flush (a write syscall) is deferred to the end of the loop turn, so the lines
    of every request finished in that turn leave in one write; they still appear at once.
    """
    global _flush_pending
    sys.stdout.write(text + "\n")
    if _flush_pending:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        sys.stdout.flush()
        return
    _flush_pending = True
    loop.call_soon(_flush)


def _flush() -> None:
    global _flush_pending
    _flush_pending = False
    sys.stdout.flush()


def invoke(function: Annotated[str, typer.Argument(help="Function name.")],
           data: Annotated[str, typer.Option("--data", "-d", help="JSON input.")] = "{}",
           project_dir: ProjectDir = Path("."),
           as_json: Annotated[bool, typer.Option("--json", help="Print status, request id and body as JSON.")] = False,
           ) -> None:
    """Call a function through the gateway (the running `flux dev`, or in-process)."""
    try:
        project = load_project(project_dir)
    except ManifestError as exc:
        fail("\n".join(exc.problems))
    spec = project.functions.get(function)
    if spec is None:
        fail(f"no function named {function!r}", hint=f"functions: {', '.join(sorted(project.functions)) or 'none'}")
    try:
        json.loads(data)
    except json.JSONDecodeError as exc:
        fail(f"--data is not valid JSON: {exc.msg}")
    path = _concrete_path(spec.route, data)
    status, request_id, body = asyncio.run(_call(project.root, spec.method, path, data.encode()))
    if as_json:
        print_json({"status": status, "request_id": request_id, "body": body})
    else:
        err_console.print(f"[dim]{status} · request {request_id}[/]")
        print_json(body)
    if status >= 400:
        raise typer.Exit(1)


def _concrete_path(route: str, data: str) -> str:
    """Fill `{param}` segments from the input object so `flux invoke get_order -d '{"id": 3}'` works."""
    values = json.loads(data)
    parts = []
    for segment in route.split("/"):
        if segment.startswith("{") and segment.endswith("}"):
            key = segment[1:-1]
            if not isinstance(values, dict) or key not in values:
                fail(f"the route {route} needs {key!r} in --data")
            parts.append(str(values[key]))
        else:
            parts.append(segment)
    return "/".join(parts)


async def _call(root: Path, method: str, path: str, body: bytes) -> tuple[int, str, object]:
    from functions.local.stack import StatePaths

    dev_file = StatePaths.of(root).dev_file
    if dev_file.exists():
        try:
            info = json.loads(dev_file.read_text())
            if not pid_alive(int(info["pid"])):
                info = None
        except (OSError, ValueError, KeyError):
            info = None
        if info:
            import httpx

            async with httpx.AsyncClient(timeout=120) as client:
                response = await client.request(method, f"{info['url']}{path}", content=body,
                                                headers={"content-type": "application/json"})
            return response.status_code, response.headers.get("x-request-id", ""), _decode(response.content)
    from functions.local.stack import LocalStack
    from functions.shared.apigw import HttpRequest

    stack = LocalStack(root, min_warm=0)
    await stack.start()
    try:
        response = await stack.gateway.handle(HttpRequest(method, path, headers=(("content-type", "application/json"),),
                                                          body=body))
    finally:
        await stack.stop()
    return response.status, response.header("x-request-id") or "", _decode(response.body)


def _decode(raw: bytes) -> object:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return raw.decode("utf-8", "replace")
