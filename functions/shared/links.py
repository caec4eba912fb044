"""Links that would let a function read outside its folder, found before anything runs.

Deno's ``--allow-read=<dir>`` is checked against the path as written, not its
target, so a symlink ``root -> /`` inside a function folder, or a hard link to
``.flux/secrets.db``, would widen what the function reads. The loader (flux.json
validation), the worker start and the packager all call :func:`link_problems`;
any symlink whose resolved target lies outside the allowed roots, and any regular
file with more than one hard link, is refused with a message naming the file.
(A hard link has no "target": the same inode may also be reachable from anywhere,
so no hard link is accepted at all.)
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from functions.shared.errors import FluxError


class LinkOutsideFunction(FluxError):
    """A function folder (or lib/) holds a link that would widen what the function reads."""

    status, code = 400, "link_outside_function"

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def _inside(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def link_problems(folder: Path, allowed: Iterable[Path], *, shown_from: Path | None = None) -> list[str]:
    """One message per offending link under ``folder`` (walked without following links)."""
    roots = [Path(os.path.realpath(r)) for r in allowed]
    base = shown_from or folder

    def shown(path: Path) -> str:
        try:
            return str(path.relative_to(base))
        except ValueError:
            return str(path)

    problems: list[str] = []
    for directory, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in [*dirnames, *filenames]:
            path = Path(directory) / name
            try:
                info = path.lstat()
            except OSError:
                continue
            if stat.S_ISLNK(info.st_mode):
                target = Path(os.path.realpath(path))
                if not _inside(target, roots):
                    problems.append(f"{shown(path)}: symbolic link to {target}, outside the folders a function "
                                    "may read (its own folder and lib/); replace it with a copy")
            elif stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
                problems.append(f"{shown(path)}: hard link ({info.st_nlink} names for one file); a function may "
                                "only read files of its own, replace it with a copy")
    return problems


def function_read_roots(function_dir: Path, project_root: Path) -> list[Path]:
    """What a function may read: its folder, and the project's shared ``lib/`` when there is one."""
    roots = [function_dir]
    lib = project_root / "lib"
    if lib.is_dir() and not lib.is_symlink():
        roots.append(lib)
    return roots


def check_project_links(project_root: Path, function_dirs: Iterable[Path]) -> None:
    """Raise :class:`LinkOutsideFunction` listing every offending link of a project (packaging calls this)."""
    problems: list[str] = []
    for folder in function_dirs:
        problems.extend(link_problems(folder, function_read_roots(folder, project_root), shown_from=project_root))
    lib = project_root / "lib"
    if lib.is_dir():
        problems.extend(link_problems(lib, [lib], shown_from=project_root))
    if problems:
        raise LinkOutsideFunction(problems)
