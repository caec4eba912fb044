"""Shared CLI output: rich for people, plain JSON for `--json`, one error style, exit codes.

Human output of anything a request or a function chose (paths, log lines, span names, job
errors) goes through :func:`escape` / :func:`escape_tree` (functions/shared/terminal.py, the
same helper ``flux dev`` uses), so it cannot drive the terminal. ``--json`` output is JSON,
whose string escaping already covers control characters.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console

from functions.shared.terminal import escape, escape_tree

__all__ = ["console", "err_console", "escape", "escape_tree", "fail", "print_json"]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def fail(message: str, *, hint: str | None = None, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        err_console.print(f"[dim]{hint}[/]")
    raise typer.Exit(code)
