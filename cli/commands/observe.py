"""``flux trace``, ``flux tail``, ``flux logs``, ``flux why`` and ``flux login``: the terminal side of observability.

Each command is a plain function (registered on :data:`app` and exported so the
top-level ``flux`` app can register it too) that asks :mod:`cli.client` for the
API, makes one or a few GETs and prints: human output by default, ``--json``
for scripts. Failures print one clear line to stderr and exit 1.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli.client import ApiClient, ApiError, Credentials, HttpApiClient, api_base, resolve_client, save_credentials
from cli.output import escape, escape_tree
from functions.observability.params import format_since
from functions.observability.why import explain_failure

app = typer.Typer(help="Traces, live requests, logs and failure analysis.", no_args_is_help=True)

ApiUrl = Annotated[str | None, typer.Option("--api-url", help="API base URL (overrides FLUX_API_URL and login).")]
ProjectDir = Annotated[Path | None, typer.Option("--project-dir", "-C", help="Project directory (default: current).",
                                                 file_okay=False)]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of the human view.")]

KIND_STYLES = {"gateway": "magenta", "function": "cyan", "db": "yellow", "queue": "blue", "http": "green",
               "custom": "white"}
BAR_WIDTH = 48
TAIL_LOOKBACK_US = 5 * 60 * 1_000_000  # a request shows up when it ends, so re-ask for anything that started lately
LOG_LOOKBACK_US = 30 * 1_000_000
SEEN_MAX = 20_000


def _console() -> Console:
    return Console(highlight=False, soft_wrap=False)


def _fail(message: str) -> typer.Exit:
    Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {escape(message)}", markup=True)
    return typer.Exit(1)


@contextmanager
def _client(api_url: str | None, project_dir: Path | None) -> Iterator[ApiClient]:
    try:
        client = resolve_client(api_url=api_url, project_dir=project_dir)
    except ApiError as exc:
        raise _fail(exc.message) from None
    try:
        yield client
    except ApiError as exc:
        if exc.status == 401:
            raise _fail(f"{client.description} refused the request (401): run `flux login --api-url URL --key KEY` "
                        "with an admin key") from None
        raise _fail(exc.message) from None
    finally:
        client.close()


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _ms(value_us: float) -> str:
    ms = value_us / 1000
    if ms >= 1000:
        return f"{ms / 1000:.2f}s"
    return f"{ms:.1f}ms" if ms < 100 else f"{ms:.0f}ms"


def _clock(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us / 1_000_000, tz=UTC).astimezone().strftime("%H:%M:%S.%f")[:-3]


# -- flux trace -----------------------------------------------------------------------------------------------------

def _detail(span: dict[str, Any]) -> str:
    attrs = span.get("attrs") or {}
    kind = span.get("kind")
    if kind == "db":
        parts = [str(attrs.get("table", "")), str(attrs.get("operation", ""))]
        if attrs.get("rows") is not None:
            parts.append(f"rows={attrs['rows']}")
        if attrs.get("cache"):
            parts.append(str(attrs["cache"]))
        return " ".join(p for p in parts if p)
    if kind == "gateway":
        auth = attrs.get("auth.key_name") or attrs.get("auth.subject") or attrs.get("auth.mode") or ""
        return f"{attrs.get('http.status', '')} {auth}".strip()
    if kind == "function":
        if span.get("status") == "error":
            return str(attrs.get("error.code") or "error")
        return "cold start" if attrs.get("cold") else ""
    if kind == "queue" and "attempt" in attrs:
        return f"attempt {attrs['attempt']} · waited {attrs.get('queue_wait_ms', '?')}ms · {attrs.get('outcome', '')}"
    if kind == "queue":
        return f"job {str(attrs.get('job_id', ''))[:12]}"
    if kind == "http":
        return str(attrs.get("http.status", ""))
    return ""


def _bar(span: dict[str, Any], total_us: int, style: str, width: int) -> Text:
    total = max(total_us, 1)
    start = min(int(span.get("offset_us", 0) / total * width), width - 1)
    length = min(max(1, round(max(span.get("duration_us", 0), 0) / total * width)), width - start)
    return Text.assemble(("·" * start, "grey37"), ("█" * length, style), ("·" * (width - start - length), "grey37"))


def _walk(root: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """Nodes in tree order with their ``├─``/``└─`` prefixes (iterative: deep traces must not recurse)."""
    stack: list[tuple[dict[str, Any], str, str]] = [(root, "", "")]
    while stack:
        node, prefix, connector = stack.pop()
        yield node, prefix + connector
        children = node.get("children") or []
        child_prefix = prefix + ("│  " if connector == "├─ " else "   " if connector else "")
        for index in range(len(children) - 1, -1, -1):
            stack.append((children[index], child_prefix, "└─ " if index == len(children) - 1 else "├─ "))


def render_trace(trace: dict[str, Any], console: Console) -> None:
    status_style = "bold red" if trace["status"] == "error" else "bold green"
    header = Text.assemble((trace["name"], "bold"), "  ", (trace["status"].upper(), status_style),
                           f"  {trace['duration_ms']:.1f}ms  ", (f"{trace['span_count']} spans", "dim"),
                           "  ", (trace["trace_id"], "dim"))
    console.print(header)
    total_us = int(trace["duration_ms"] * 1000)
    rows = []
    for node, prefix in _walk(trace["root"]):
        style = "red" if node.get("status") == "error" else KIND_STYLES.get(node.get("kind", ""), "white")
        name = Text(prefix, style="grey50")
        name.append(node.get("name", ""), style="bold red" if node.get("status") == "error" else "")
        for flag, flag_style in (("n_plus_one", "bold red"), ("slow", "bold yellow"), ("orphan", "dim")):
            if node.get(flag):
                name.append(f" [{'N+1' if flag == 'n_plus_one' else flag}]", style=flag_style)
        rows.append((node, name, style, _detail(node)))
    # Fixed widths so narrow terminals shrink the text columns, never drop the waterfall.
    bar_width = max(12, min(BAR_WIDTH, console.width - 100))
    span_width = min(60, max(len(r[1]) for r in rows))
    detail_width = min(40, max((len(r[3]) for r in rows), default=0))
    spare = console.width - (span_width + 9 + detail_width + 9 + bar_width + 8)  # 8: padding between columns
    if spare < 0:
        cut = min(-spare, max(0, detail_width - 12))
        detail_width -= cut
        span_width = max(16, span_width - (-spare - cut))
    table = Table(box=None, show_header=True, header_style="dim", pad_edge=False, expand=False)
    table.add_column("span", no_wrap=True, overflow="ellipsis", width=span_width)
    table.add_column("kind", no_wrap=True, width=9)
    table.add_column("detail", no_wrap=True, overflow="ellipsis", width=detail_width)
    table.add_column("duration", justify="right", no_wrap=True, width=9)
    table.add_column("waterfall", no_wrap=True, width=bar_width)
    for node, name, style, detail in rows:
        table.add_row(name, Text(node.get("kind", ""), style=style), detail, _ms(node.get("duration_us", 0)),
                      _bar(node, total_us, style, bar_width))
    console.print(table)
    _render_findings(trace, console)


def _render_findings(trace: dict[str, Any], console: Console) -> None:
    for warning in trace.get("n1_warnings") or []:
        mode = "concurrent" if warning.get("concurrent") else "sequential"
        console.print(Text.assemble(("N+1 ", "bold red"), f"{warning.get('count')} queries ({mode}) on ",
                                    (str(warning.get("table")), "bold"), f": {warning.get('message', '')}"))
        console.print(Text(f"    {warning.get('sql_shape', '')}", style="dim"))
        if warning.get("suggestion"):
            console.print(Text(f"    → {warning['suggestion']}", style="green"))
    for query in trace.get("slow_queries") or []:
        console.print(Text.assemble(("slow ", "bold yellow"), f"{query.get('operation', '')} ",
                                    (str(query.get("table", "")), "bold"),
                                    f" took {float(query.get('duration_ms', 0)):.1f}ms: {query.get('message', '')}"))
    for index in trace.get("suggested_indexes") or []:
        costs = ""
        if index.get("est_cost_before") is not None and index.get("est_cost_after") is not None:
            costs = f" (planner cost {index['est_cost_before']} → {index['est_cost_after']})"
        console.print(Text.assemble(("index ", "bold cyan"), f"{index.get('reason', '')}{costs}"))
        console.print(Text(f"    {index.get('ddl', '')}", style="cyan"))
    if trace.get("advice_error"):
        console.print(Text(trace["advice_error"], style="dim"))
    logs = trace.get("logs") or []
    if logs:
        shown = logs[:MAX_TRACE_LOGS]
        console.print(Text(f"logs ({len(logs)})", style="bold"))
        for record in shown:
            console.print(_log_line(escape_tree(record)))
        if len(logs) > len(shown):
            console.print(Text(f"... {len(logs) - len(shown)} more: flux logs --request-id {trace['trace_id']}",
                               style="dim"))


def trace(trace_id: Annotated[str, typer.Argument(help="Trace (request) id.")], json_output: AsJson = False,
          api_url: ApiUrl = None, project_dir: ProjectDir = None) -> None:
    """Show one request: span tree, waterfall, N+1 warnings, slow queries and index suggestions."""
    with _client(api_url, project_dir) as client:
        body = client.get(f"/traces/{trace_id}")
    if json_output:
        _print_json(body)
    else:
        render_trace(escape_tree(body), _console())


# -- flux tail ------------------------------------------------------------------------------------------------------

def _request_line(summary: dict[str, Any]) -> Text:
    code = summary.get("http_status")
    style = "red" if (code or 0) >= 500 or summary.get("status") == "error" else "yellow" if (code or 0) >= 400 \
        else "green"
    method = summary.get("method") or summary.get("kind", "")
    route = summary.get("route") or summary.get("name", "")
    return Text.assemble((_clock(summary["start_us"]), "dim"), " ", (f"{method:<6}", "bold"), " ",
                         f"{route:<28} ", (f"{code if code is not None else '-':>3}", style), " ",
                         f"{_ms(summary.get('duration_us', 0)):>8}  ", (summary.get("function", ""), "cyan"), "  ",
                         (summary["trace_id"], "dim"))


def tail(function: Annotated[str | None, typer.Option("--function", help="Only this function.")] = None,
         status: Annotated[str | None, typer.Option("--status", help="ok or error.")] = None,
         interval: Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between polls.")] = 1.0,
         count: Annotated[int | None, typer.Option("--count", min=1, help="Exit after this many requests.")] = None,
         json_output: AsJson = False, api_url: ApiUrl = None, project_dir: ProjectDir = None) -> None:
    """Follow requests live: method, route, status, duration and request id. Ctrl-C stops."""
    console = _console()
    seen: dict[str, None] = {}
    printed = 0
    newest = 0
    first = True
    with _client(api_url, project_dir) as client:
        if not json_output:
            console.print(Text(f"following requests from {client.description} (Ctrl-C to stop)", style="dim"))
        try:
            while True:
                params: dict[str, Any] = {"function": function, "status": status, "limit": 10 if first else 200}
                if not first:
                    params["since"] = format_since(max(0, newest - TAIL_LOOKBACK_US))
                try:
                    rows = client.get("/traces", params)["traces"]
                except ApiError as exc:
                    if exc.status != 0 or first:
                        raise
                    rows = []  # it answered before, so it is restarting (flux dev reload): keep following
                for row in sorted(rows, key=lambda r: r["start_us"]):
                    if row["trace_id"] in seen:
                        continue
                    seen[row["trace_id"]] = None
                    newest = max(newest, row["start_us"])
                    _print_json(row) if json_output else console.print(_request_line(escape_tree(row)))
                    printed += 1
                    if count is not None and printed >= count:
                        return
                while len(seen) > SEEN_MAX:
                    seen.pop(next(iter(seen)))
                first = False
                time.sleep(interval)
        except KeyboardInterrupt:
            return


# -- flux logs ------------------------------------------------------------------------------------------------------

MAX_TRACE_LOGS = 30
LEVEL_STYLES = {"debug": "dim", "info": "blue", "warn": "yellow", "error": "bold red"}


def _log_line(record: dict[str, Any]) -> Text:
    level = str(record.get("level", "info"))
    fields = record.get("fields") or {}
    line = Text.assemble((_clock(record["ts_us"]), "dim"), " ", (f"{level.upper():<5}", LEVEL_STYLES.get(level, "")),
                         " ", (f"{record.get('function', '')}", "cyan"), "  ", record.get("message", ""))
    if fields:
        line.append("  " + json.dumps(fields, default=str, separators=(",", ":")), style="grey62")
    line.append(f"  {record['trace_id']}", style="dim")
    return line


def logs(function: Annotated[str | None, typer.Option("--function", help="Only this function.")] = None,
         level: Annotated[str | None, typer.Option("--level", help="debug, info, warn or error (and above).")] = None,
         since: Annotated[str | None, typer.Option("--since", help="ISO 8601 or an age: 15m, 2h, 1d.")] = None,
         request_id: Annotated[str | None, typer.Option("--request-id", help="Only this request's logs.")] = None,
         follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
         limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="Most recent lines to show.")] = 100,
         interval: Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between polls.")] = 1.0,
         json_output: AsJson = False, api_url: ApiUrl = None, project_dir: ProjectDir = None) -> None:
    """Print function logs; --follow keeps polling for new ones."""
    console = _console()
    seen: dict[tuple[Any, ...], None] = {}
    newest = 0
    params: dict[str, Any] = {"function": function, "level": level, "since": since, "request_id": request_id,
                              "limit": limit}
    with _client(api_url, project_dir) as client:
        try:
            while True:
                for record in client.get("/logs", params)["logs"]:
                    key = (record["ts_us"], record["trace_id"], record.get("span_id"), record.get("message"))
                    if key in seen:
                        continue
                    seen[key] = None
                    newest = max(newest, record["ts_us"])
                    _print_json(record) if json_output else console.print(_log_line(escape_tree(record)))
                if not follow:
                    return
                while len(seen) > SEEN_MAX:
                    seen.pop(next(iter(seen)))
                params = {**params, "limit": 1000,
                          "since": format_since(max(0, newest - LOG_LOOKBACK_US)) if newest else since}
                time.sleep(interval)
        except KeyboardInterrupt:
            return


# -- flux why -------------------------------------------------------------------------------------------------------

def render_why(report: dict[str, Any], console: Console) -> None:
    if not report["failed"]:
        console.print(Text.assemble(("✓ ", "green"), f"no error in this trace ({report.get('name')}, "
                                    f"HTTP {report.get('http_status')})"))
        return
    span, error = report["failing_span"], report["error"]
    console.print(Text.assemble(("✗ ", "bold red"), (str(report.get("name")), "bold"),
                                f" failed with HTTP {report.get('http_status')}"))
    console.print(Text.assemble("  failing span: ", (f"{span.get('kind')} {span.get('name')}", "bold"),
                                f" after {_ms(span.get('duration_us', 0))}"))
    console.print(Text.assemble("  error: ", (str(error.get("code") or "error"), "red"),
                                f" {error.get('message', '')}"))
    if error.get("file"):
        console.print(Text.assemble("  at ", (f"{error['file']}:{error.get('line', '?')}", "bold yellow")))
    if error.get("stack"):
        stack = error["stack"]
        for line in (stack if isinstance(stack, list) else str(stack).splitlines())[:8]:
            console.print(Text(f"    {line}", style="dim"))
    writes = report["db_writes"]
    console.print(Text(f"  database writes: {len(writes) or 'none'}"))
    for write in writes:
        mark = ("✓", "green") if write["status"] == "ok" else ("✗", "red")
        rows = f" ({write['rows']} rows)" if write.get("rows") is not None else ""
        where = " [async]" if write.get("async") else ""
        console.print(Text.assemble("    ", mark, f" {write['operation']} {write['table']}{rows}{where}"))
    console.print(Text.assemble(("  next: ", "bold"), report["next_step"] or ""))


def why(trace_id: Annotated[str, typer.Argument(help="Trace (request) id.")], json_output: AsJson = False,
        api_url: ApiUrl = None, project_dir: ProjectDir = None) -> None:
    """Explain a failed request: the failing span, the error's file and line, its database writes, what to do."""
    with _client(api_url, project_dir) as client:
        report = explain_failure(client.get(f"/traces/{trace_id}"))
    if json_output:
        _print_json(report)
    else:
        error = report.get("error") or {}
        if error.get("stack"):  # a stack keeps its lines; each is escaped on its own
            report = {**report, "error": {**error, "stack": str(error["stack"]).splitlines()}}
        render_why(escape_tree(report), _console())


# -- flux login -----------------------------------------------------------------------------------------------------

def login(api_url: Annotated[str, typer.Option("--api-url", help="The hosted API's base URL.")],
          key: Annotated[str, typer.Option("--key", help="An admin API key.", prompt="Admin API key",
                                           hide_input=True)],
          json_output: AsJson = False) -> None:
    """Save the hosted API URL and admin key after checking them with one request."""
    client = HttpApiClient(api_url, key=key.strip())
    try:
        client.get("/traces", {"limit": 1})
    except ApiError as exc:
        if exc.status in (401, 403):
            raise _fail(f"{api_base(api_url)} refused the key ({exc.status} {exc.code}); "
                        "use an admin key (`flux keys create NAME --scope admin`)") from None
        raise _fail(exc.message) from None
    finally:
        client.close()
    path = save_credentials(Credentials(api_url.strip().rstrip("/"), key.strip()))
    if json_output:
        _print_json({"api_url": api_base(api_url), "credentials": str(path)})
    else:
        _console().print(Text.assemble(("✓ ", "green"), f"logged in to {api_base(api_url)}; "
                                       f"credentials saved to {path}"))


for _command in (trace, tail, logs, why, login):
    app.command()(_command)

__all__ = ["app", "login", "logs", "render_trace", "render_why", "tail", "trace", "why"]
