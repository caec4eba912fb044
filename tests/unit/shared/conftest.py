"""Helpers for the shared-module unit tests: build small Flux projects under tmp_path."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

_NO_INDEX = object()

ProjectFactory = Callable[..., Path]


def write_project(root: Path, project: Any = None, functions: dict[str, Any] | None = None,
                  *, without_index: tuple[str, ...] = ()) -> Path:
    """Write ``<root>/flux.json`` and ``functions/<name>/{flux.json,index.ts}``.

    A function value of ``None`` means "no flux.json" (all defaults); a ``str`` is written
    verbatim (for invalid JSON); anything else is dumped as JSON.
    """
    root.mkdir(parents=True, exist_ok=True)
    project = {"name": "demo"} if project is None else project
    (root / "flux.json").write_text(project if isinstance(project, str) else json.dumps(project), encoding="utf-8")
    for name, config in (functions or {}).items():
        folder = root / "functions" / name
        folder.mkdir(parents=True, exist_ok=True)
        if name not in without_index:
            (folder / "index.ts").write_text("export default async function handler() { return {}; }\n")
        if config is not None:
            text = config if isinstance(config, str) else json.dumps(config)
            (folder / "flux.json").write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectFactory:
    counter = iter(range(1_000))

    def factory(project: Any = None, functions: dict[str, Any] | None = None, **kwargs: Any) -> Path:
        return write_project(tmp_path / f"app{next(counter)}", project, functions, **kwargs)

    return factory
