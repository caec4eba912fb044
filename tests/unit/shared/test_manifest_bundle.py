"""The packaged manifest (functions/shared/manifest_bundle.py ``dump_bundle`` / ``load_bundle``).

A Lambda reads its Project back from the JSON the packaging step wrote, without pydantic;
these tests hold what it reads to the very Project :func:`load_project` validated (every
field, its type, the models' behaviour), wherever the bundle is unpacked.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from functions.shared.manifest import Project, load_project
from functions.shared.manifest_bundle import (
    BUNDLE_NAME,
    BundleError,
    Record,
    dump_bundle,
    load_bundle,
    load_packaged_project,
)

REPO = Path(__file__).resolve().parents[3]


def write(root: Path, files: dict[str, Any]) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return root


def shape(value: Any) -> Any:
    """Every field of every model or record in the tree with its value and type, by class name."""
    if isinstance(value, BaseModel):
        return (type(value).__name__, {name: shape(getattr(value, name)) for name in type(value).model_fields})
    if isinstance(value, Record):
        return (type(value).__name__, {name: shape(item) for name, item in vars(value).items()})
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [shape(item) for item in value])
    return (type(value).__name__, value)


SCHEMA = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
          "properties": {"$model": {"type": "string"}, "p": {"$ref": "#/$defs/p"}}, "$defs": {"p": {"type": "integer"}}}

FEATURES = {
    "flux.json": {"name": "bundled", "auth": {"default": "api_key",
                                              "jwt": {"secret_name": "jwt-key", "leeway_s": 5}},
                  "rate_limit": {"requests": 5}, "secrets": ["stripe"], "stages": {"qa": {"profile": "prod"}},
                  "database": {"app_role": False}, "cors": {"origins": ["https://a.example"]}},
    "functions/hello/index.ts": "export default () => 'hi'",
    "functions/hello/flux.json": {"route": "/hi/{who}", "method": "GET", "auth": {"mode": "jwt", "optional": True},
                                  "input_schema": SCHEMA, "allow_net": ["api.example.com:443"]},
    "functions/job/index.ts": "export default () => 1",
    "functions/job/flux.json": {"async": True, "ordering": {"group_by": "id"}, "retry": {"backoff": "fixed"},
                                "secrets": [], "concurrency": 3},
    "functions/plain/index.ts": "export default () => 2",
    "functions/plain/flux.json": {"pushes": ["job"], "invokes": ["hello"], "internal": True, "auth": "none"},
}


def packaged(tmp_path: Path, source: str) -> tuple[Project, Path]:
    """The project of ``source`` packaged (bundle written where it was validated), then unpacked elsewhere."""
    built = tmp_path / "build"
    if source == "features":
        write(built, FEATURES)
    else:
        shutil.copytree(REPO / source, built, ignore=shutil.ignore_patterns(".flux"))
    (built / BUNDLE_NAME).write_text(dump_bundle(load_project(built)))
    unpacked = tmp_path / "var" / "task" / "project"
    shutil.copytree(built, unpacked)
    return load_project(unpacked), unpacked


@pytest.mark.parametrize("source", ["examples/shop", "features"])
def test_the_bundle_reads_back_the_validated_project_where_it_is_unpacked(tmp_path: Path, source: str) -> None:
    expected, unpacked = packaged(tmp_path, source)
    loaded = load_bundle(unpacked)
    assert shape(loaded) == shape(expected)
    assert loaded.root == unpacked.resolve()
    assert all(spec.entry.is_file() for spec in loaded.functions.values())
    assert shape(load_packaged_project(unpacked)) == shape(expected)
    assert dump_bundle(loaded) == dump_bundle(expected), "read back, it dumps as the JSON it was read from"


def test_the_records_behave_like_the_models_and_are_read_only(tmp_path: Path) -> None:
    expected, unpacked = packaged(tmp_path, "features")
    loaded = load_bundle(unpacked)
    for name, spec in expected.functions.items():
        record = loaded.function(name)
        assert (record.is_async, record.route_key, record.internal, record.pushes, record.invokes) == \
            (spec.is_async, spec.route_key, spec.internal, spec.pushes, spec.invokes)
    assert loaded.function("job").is_async and loaded.function("plain").pushes == ("job",)
    assert loaded.function("hello").config.input_schema == SCHEMA, "$-keys of a schema are the user's, kept as is"
    assert loaded.config.database.app_role_name is None
    assert [loaded.config.stage_profile(s) for s in ("qa", "prod", "dev")] == ["prod", "prod", "dev"]
    assert repr(loaded.config.rate_limit).startswith("RateLimit(")
    with pytest.raises(AttributeError, match="read-only"):
        loaded.config.name = "other"  # type: ignore[misc]


def test_reading_a_bundle_does_not_import_pydantic(tmp_path: Path) -> None:
    """The point of the format: a runtime Lambda's INIT pays no pydantic import (~60 ms of it)."""
    _, unpacked = packaged(tmp_path, "examples/shop")
    probe = ("import sys\n"
             "from functions.shared.manifest_bundle import load_packaged_project\n"
             f"project = load_packaged_project({str(unpacked)!r})\n"
             "print(len(project.functions), 'pydantic' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True,
                          cwd=REPO)
    assert done.stdout.split()[1] == "False", done.stdout + done.stderr
    assert int(done.stdout.split()[0]) > 0


def test_without_a_bundle_the_project_is_validated_and_a_wrong_format_is_refused(tmp_path: Path) -> None:
    root = write(tmp_path / "p", {"flux.json": {"name": "x", "functions_dir": "fns"}})
    assert load_packaged_project(root).config.functions_dir == "fns"
    (root / BUNDLE_NAME).write_text(json.dumps({"format": 1, "project": {}}))
    with pytest.raises(BundleError, match="format 1, expected 2; package the project again"):
        load_packaged_project(root)
