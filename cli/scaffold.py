"""`flux init`: a new project that runs on the first `flux dev`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

FLUX_D_TS = Path(__file__).resolve().parent.parent / "functions" / "runtime" / "bootstrap" / "flux.d.ts"

HELLO_TS = """\
/// <reference path="../../flux.d.ts" />

export default async function handler(input: { name?: string }, ctx: FluxContext) {
  const name = input.name ?? "world";
  ctx.log.info("saying hello", { name });
  return { message: `Hello, ${name}!`, requestId: ctx.requestId };
}
"""

GITIGNORE = ".flux/\nnode_modules/\ncdk.out/\n"


class ScaffoldError(Exception):
    pass


def create_project(target: Path, name: str | None = None) -> list[Path]:
    target = target.resolve()
    if (target / "flux.json").exists():
        raise ScaffoldError(f"{target / 'flux.json'} already exists; not overwriting a project")
    project_name = name or _project_name(target.name)
    files = {
        target / "flux.json": json.dumps({"name": project_name}, indent=2) + "\n",
        target / "functions" / "hello" / "index.ts": HELLO_TS,
        target / "functions" / "hello" / "flux.json": json.dumps({"route": "/hello", "method": "POST"}, indent=2)
        + "\n",
        target / "schema" / ".gitkeep": "",
        target / ".gitignore": GITIGNORE,
    }
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    shutil.copyfile(FLUX_D_TS, target / "flux.d.ts")
    return [*files, target / "flux.d.ts"]


def _project_name(folder: str) -> str:
    cleaned = "".join(c if c.isalnum() or c == "-" else "-" for c in folder).strip("-")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = f"app-{cleaned}" if cleaned else "app"
    return cleaned[:64]
