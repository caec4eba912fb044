"""The packaged manifest (functions/shared/manifest.py ``dump_bundle`` / ``load_bundle``).

A Lambda rebuilds its Project from the JSON the packaging step wrote, without validating;
these tests hold it to being the very Project :func:`load_project` validated, wherever the
bundle is unpacked.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from functions.shared.manifest import (
    BUNDLE_NAME,
    ManifestError,
    Project,
    dump_bundle,
    load_bundle,
    load_packaged_project,
    load_project,
)

REPO = Path(__file__).resolve().parents[3]


def write(root: Path, files: dict[str, Any]) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return root


def every_field_of(project: Project) -> dict[str, Any]:
    """Values, types and ``model_fields_set`` of every model in the tree (``==`` alone ignores some)."""
    def walk(value: Any) -> Any:
        if isinstance(value, BaseModel):
            return (type(value).__name__, sorted(value.model_fields_set),
                    {name: walk(getattr(value, name)) for name in type(value).model_fields})
        if isinstance(value, dict):
            return {key: walk(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return (type(value).__name__, [walk(item) for item in value])
        return (type(value).__name__, value)
    return walk(project)


FEATURES = {
    "flux.json": {"name": "bundled", "auth": {"default": "api_key",
                                              "jwt": {"secret_name": "jwt-key", "leeway_s": 5}},
                  "rate_limit": {"requests": 5}, "secrets": ["stripe"], "stages": {"qa": {"profile": "prod"}},
                  "database": {"app_role": False}, "cors": {"origins": ["https://a.example"]}},
    "functions/hello/index.ts": "export default () => 'hi'",
    "functions/hello/flux.json": {"route": "/hi/{who}", "method": "GET", "auth": {"mode": "jwt", "optional": True},
                                  "input_schema": {"type": "object"}, "allow_net": ["api.example.com:443"]},
    "functions/job/index.ts": "export default () => 1",
    "functions/job/flux.json": {"async": True, "ordering": {"group_by": "id"}, "retry": {"backoff": "fixed"},
                                "secrets": [], "concurrency": 3},
    "functions/plain/index.ts": "export default () => 2",
    "functions/plain/flux.json": {"pushes": ["job"], "invokes": ["hello"], "internal": True, "auth": "none"},
}


@pytest.mark.parametrize("source", ["examples/shop", "features"])
def test_the_bundle_rebuilds_the_validated_project_where_it_is_unpacked(tmp_path: Path, source: str) -> None:
    built = tmp_path / "build"
    if source == "features":
        write(built, FEATURES)
    else:
        shutil.copytree(REPO / source, built, ignore=shutil.ignore_patterns(".flux"))
    validated = load_project(built)
    (built / BUNDLE_NAME).write_text(dump_bundle(validated))
    unpacked = tmp_path / "var" / "task" / "project"
    shutil.copytree(built, unpacked)
    loaded = load_bundle(unpacked)
    expected = load_project(unpacked)
    assert loaded == expected
    assert every_field_of(loaded) == every_field_of(expected)
    assert loaded.root == unpacked.resolve()
    assert all(spec.entry.is_file() for spec in loaded.functions.values())
    assert load_packaged_project(unpacked) == expected


def test_without_a_bundle_the_project_is_validated_and_a_wrong_format_is_refused(tmp_path: Path) -> None:
    root = write(tmp_path / "p", {"flux.json": {"name": "x", "functions_dir": "fns"}})
    assert load_packaged_project(root).config.functions_dir == "fns"
    (root / BUNDLE_NAME).write_text(json.dumps({"format": 99, "project": {}}))
    with pytest.raises(ManifestError, match="format 99"):
        load_packaged_project(root)
