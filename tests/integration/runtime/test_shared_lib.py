"""Issue #15: the project's lib/ folder is importable from every function, inside the sandbox; nothing else is."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from functions.shared.apigw import HttpRequest
from tests.integration.runtime.conftest import Harness

pytestmark = pytest.mark.integration

FUNCTIONS = {
    "price": """
        import { toCents } from "../../lib/money.ts";
        export default async function handler(input) { return { cents: toCents(input.amount) }; }""",
    "total": """
        import { toCents } from "../../lib/money.ts";
        import { VERSION } from "../../lib/nested/version.ts";
        export default async function handler(input) {
          return { cents: input.amounts.reduce((s, a) => s + toCents(a), 0), version: VERSION };
        }""",
    "sneaky": """
        import { leaked } from "../../private/data.ts";
        export default async function handler() { return { leaked }; }""",
    "neighbour": """
        import other from "../price/index.ts";
        export default async function handler() { return { other: typeof other }; }""",
    "reads_lib": """
        export default async function handler() {
          return { source: Deno.readTextFileSync(new URL("../../lib/money.ts", import.meta.url)).length > 0 };
        }""",
}


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root: Path = tmp_path_factory.mktemp("libproject")
    (root / "flux.json").write_text(json.dumps({"name": "libs"}))
    (root / "lib" / "nested").mkdir(parents=True)
    (root / "lib" / "money.ts").write_text(
        'export function toCents(a: string): number { const [w, f = ""] = a.split(".");'
        ' return Number(w) * 100 + Number(f.padEnd(2, "0")); }\n')
    (root / "lib" / "nested" / "version.ts").write_text('export const VERSION = "v1";\n')
    (root / "private").mkdir()
    (root / "private" / "data.ts").write_text('export const leaked = "project secret";\n')
    for name, source in FUNCTIONS.items():
        folder = root / "functions" / name
        folder.mkdir(parents=True)
        (folder / "index.ts").write_text(source)
    harness = Harness(root)
    yield harness
    harness.close()


def post(h: Harness, name: str, body: object) -> tuple[int, dict]:
    response = h.run(h.stack.gateway.handle(HttpRequest(
        "POST", f"/{name}", headers=(("content-type", "application/json"),), body=json.dumps(body).encode())))
    return response.status, response.json()


def test_two_functions_share_one_lib_module(h):
    assert post(h, "price", {"amount": "12.5"}) == (200, {"cents": 1250})
    assert post(h, "total", {"amounts": ["1.05", "2"]}) == (200, {"cents": 305, "version": "v1"})


def test_lib_is_readable_as_a_file_too(h):
    assert post(h, "reads_lib", {}) == (200, {"source": True})


def test_these_workers_ran_inside_the_mount_namespace_where_there_is_one(h):
    """The lib imports above then crossed the namespace's covers of .flux/ and functions/ for real."""
    runtime = h.stack.runtime
    if runtime.isolation != "namespace":
        pytest.skip("no user namespaces on this machine: Deno's permissions are the only wall")
    command = runtime._factory(runtime.project.functions["price"])().command
    assert command.argv[0] == "unshare"
    assert any(str(runtime.project.root / "lib") in arg for arg in command.argv if arg.startswith("--allow-read="))


@pytest.mark.parametrize("name, outside", [("sneaky", "private/data.ts"), ("neighbour", "functions/price/index.ts")])
def test_an_import_outside_the_function_and_lib_fails_with_a_clear_message(h, name, outside):
    status, body = post(h, name, {})
    assert status == 500 and body["error"] == "function_error"
    assert outside in body["message"]
    assert "lib/" in body["message"] and "own folder" in body["message"]
    assert "--allow-read" not in body["message"] and "project secret" not in json.dumps(body)
