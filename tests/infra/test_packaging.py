"""Lambda code assets: contents, caching, a lean import graph, and vendored imports usable offline.

These build real bundles in the user's build cache (``$FLUX_BUILD_CACHE`` or
~/.cache/flux/build), shared with `flux synth`: the first run on a machine fetches
wheels from PyPI, later runs are cache hits.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from functions.runtime.sandbox import deno_executable
from functions.shared.manifest import load_project
from infra.packaging import BUNDLE_DENO_DIR, BUNDLE_PROJECT_DIR, LambdaTarget, build_asset, tree_hash
from tests.infra.conftest import SHOP

# What the Lambda Python runtime provides besides the standard library.
LAMBDA_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")

RUNTIME_IMPORTS = (
    "functions.runtime.lambda_handler", "functions.runtime.lambda_runtime", "functions.queue_consumer.handler",
    "functions.queue_consumer.sqs_queue", "functions.queue_consumer.dynamo_job_store",
    "functions.queue_consumer.service", "functions.engine.service", "functions.engine.handler",
    "functions.observability.buffered", "functions.observability.dynamo_store", "functions.runtime.aws_secrets",
    "psycopg_pool",
)
CONTROL_IMPORTS = (
    "functions.gateway.handler", "functions.gateway.keys_dynamodb", "functions.gateway.ratelimit_dynamodb",
    "functions.gateway.jwt_auth", "functions.runtime.aws_secrets", "jwt", "httpx",
    "functions.observability.handler", "functions.observability.dynamo_store",
)


@pytest.fixture(scope="module")
def shop_project():
    return load_project(SHOP)


@pytest.fixture(scope="module")
def lambda_provided(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding only the packages the Lambda runtime ships (links into this venv)."""
    folder = tmp_path_factory.mktemp("lambda-runtime-libs")
    for name in LAMBDA_PROVIDED:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin, name
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (folder / source.name).symlink_to(source)
    return folder


def import_in_isolation(bundle: Path, provided: Path, modules: tuple[str, ...], extra: str = "") -> str:
    """Import ``modules`` with only the bundle, the Lambda-provided packages and the standard library."""
    code = (f"import sys; sys.path[:0] = [{str(bundle)!r}, {str(provided)!r}]\n"
            f"import importlib\nfor name in {list(modules)!r}: importlib.import_module(name)\n"
            f"from functions.shared.manifest import load_project\n"
            f"print(sorted(load_project({str(bundle / BUNDLE_PROJECT_DIR)!r}).functions))\n{extra}")
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=False,
                            cwd=bundle)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_control_asset_imports_everything_the_authorizer_and_observability_need(shop_project, lambda_provided):
    asset = build_asset("control", shop_project, target=LambdaTarget(host=True))
    out = import_in_isolation(asset.path, lambda_provided, CONTROL_IMPORTS,
                              extra="import importlib.util as u; print('psycopg', u.find_spec('psycopg'))")
    assert str(sorted(shop_project.functions)) in out
    assert "psycopg None" in out  # the authorizer's bundle stays lean
    assert not (asset.path / BUNDLE_DENO_DIR).exists()


def test_runtime_asset_imports_the_runtime_engine_and_queue_entry_points(shop_project, lambda_provided):
    asset = build_asset("runtime", shop_project, target=LambdaTarget(host=True))
    import_in_isolation(asset.path, lambda_provided, RUNTIME_IMPORTS)


def test_lambda_asset_layout_and_cache(shop_project):
    asset = build_asset("runtime", shop_project)  # the real Lambda target (manylinux, cp312)
    assert (asset.path / "functions" / "runtime" / "bootstrap" / "bootstrap.ts").is_file()
    assert (asset.path / BUNDLE_PROJECT_DIR / "flux.json").is_file()
    for spec in shop_project.functions.values():
        assert (asset.path / BUNDLE_PROJECT_DIR / spec.entry.relative_to(shop_project.root)).is_file()
    assert (asset.path / BUNDLE_PROJECT_DIR / "lib" / "money.ts").is_file()  # shared code, at the same relative path
    assert not list(asset.path.rglob(".flux"))  # local state never ships
    assert any(asset.path.glob("pydantic_core/*cpython-312-*-linux-gnu.so"))
    assert not (asset.path / "boto3").exists()  # the Lambda runtime provides it
    assert build_asset("runtime", shop_project).path == asset.path  # cache hit
    assert tree_hash(asset.path / BUNDLE_PROJECT_DIR) == tree_hash(shop_project.root)


def test_bundled_functions_load_from_the_vendored_cache_without_network(shop_project, tmp_path):
    """Every function module of examples/shop resolves from the bundle's deno_dir with --cached-only."""
    asset = build_asset("runtime", shop_project)
    runner = tmp_path / "load.ts"
    runner.write_text("for (const url of Deno.args) { await import(url); }\nconsole.log('loaded', Deno.args.length);\n")
    entries = [(asset.path / BUNDLE_PROJECT_DIR / s.entry.relative_to(shop_project.root)).as_uri()
               for s in shop_project.functions.values()]
    deno_dir = shutil.copytree(asset.path / BUNDLE_DENO_DIR, tmp_path / "deno_dir")  # deno writes caches there
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "DENO_DIR": str(deno_dir), "DENO_NO_UPDATE_CHECK": "1", "NO_COLOR": "1"}
    result = subprocess.run([deno_executable(), "run", "--cached-only", "--no-prompt", "--no-check",
                             f"--allow-read={asset.path / BUNDLE_PROJECT_DIR}", str(runner), *entries],
                            capture_output=True, text=True, env=env, cwd=asset.path / BUNDLE_PROJECT_DIR,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"loaded {len(entries)}" in result.stdout


def test_packaging_refuses_a_link_out_of_a_function_folder(tmp_path):
    """Issue #14 (1): the bundle would carry the link's target (e.g. .flux/secrets.db); refused before any build."""
    import json

    from functions.shared.links import LinkOutsideFunction

    root = tmp_path / "app"
    (root / "functions" / "f").mkdir(parents=True)
    (root / "flux.json").write_text(json.dumps({"name": "app"}))
    (root / "functions" / "f" / "index.ts").write_text("export default async () => 1;")
    project = load_project(root)
    (root / ".flux").mkdir()
    (root / ".flux" / "secrets.db").write_text("secret")
    (root / "functions" / "f" / "state").symlink_to(root / ".flux")
    os.link(root / ".flux" / "secrets.db", root / "functions" / "f" / "copy.db")
    with pytest.raises(LinkOutsideFunction) as caught:
        build_asset("runtime", project, cache=tmp_path / "cache")
    message = str(caught.value)
    assert "functions/f/state: symbolic link" in message and "functions/f/copy.db: hard link" in message
    assert not (tmp_path / "cache").exists()
