"""Lambda code assets: contents, caching, a lean import graph, and vendored imports usable offline.

These build real bundles in the user's build cache (``$FLUX_BUILD_CACHE`` or
~/.cache/flux/build), shared with `flux synth`: the first run on a machine fetches
wheels from PyPI, later runs are cache hits.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from functions.runtime.sandbox import deno_executable
from functions.shared.manifest import load_project
from functions.shared.manifest_bundle import BUNDLE_NAME, dump_bundle, load_bundle
from infra.packaging import BUNDLE_DENO_DIR, BUNDLE_PROJECT_DIR, LambdaTarget, build_asset, tree_hash
from tests.infra.conftest import SHOP

# What the Lambda Python runtime provides besides the standard library.
LAMBDA_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")

RUNTIME_IMPORTS = (
    "functions.aws.entry_http", "functions.aws.runtime_state", "functions.aws.entry_worker", "functions.aws.lazy_db",
    "functions.queue_consumer.sqs_queue", "functions.queue_consumer.dynamo_job_store", "functions.aws.database",
    "functions.queue_consumer.service", "functions.engine.service", "functions.aws.entry_engine",
    "functions.observability.buffered", "functions.observability.dynamo_store", "functions.runtime.aws_secrets",
    "psycopg_pool",
)
CONTROL_IMPORTS = (
    "functions.aws.entry_authorizer", "functions.gateway.keys_dynamodb", "functions.gateway.ratelimit_dynamodb",
    "functions.gateway.jwt_auth", "functions.runtime.aws_secrets", "jwt", "httpx",
    "functions.aws.entry_observability", "functions.observability.dynamo_store",
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
    assert any(asset.path.glob("msgspec/_core*cpython-312-*-linux-gnu.so"))  # the worker frames
    assert not (asset.path / "boto3").exists()  # the Lambda runtime provides it
    assert build_asset("runtime", shop_project).path == asset.path  # cache hit
    # /var/task is read-only: without bytecode in the bundle every cold start compiles every module.
    for module in ("functions/aws/entry_http.py", "functions/runtime/host.py", "pydantic/main.py"):
        source = asset.path / module
        (pyc,) = (source.parent / "__pycache__").glob(f"{source.stem}.cpython-312.pyc")
        flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
        assert flags == 0b01, module  # hash-based and unchecked: valid whatever mtimes the upload gives
    assert not list((asset.path / BUNDLE_PROJECT_DIR).rglob("__pycache__"))
    bundled = asset.path / BUNDLE_PROJECT_DIR
    # The validated manifest ships with the project, and loads back (unvalidated) as the same Project.
    assert dump_bundle(load_bundle(bundled)) == dump_bundle(load_project(bundled))
    plain = Path(tempfile.mkdtemp()) / "project"
    shutil.copytree(bundled, plain, ignore=shutil.ignore_patterns(BUNDLE_NAME))
    assert tree_hash(plain) == tree_hash(shop_project.root)


def _read_only_copy(asset: Path, root: Path) -> Path:
    """The bundle's project, bootstrap and Deno cache under ``root/task`` with every write bit off, as /var/task is.

    A copy because the build cache may sit in a private home folder an unprivileged user cannot enter."""
    task = root / "task"
    for part in (BUNDLE_PROJECT_DIR, BUNDLE_DENO_DIR, "functions/runtime/bootstrap"):
        shutil.copytree(asset / part, task / part, symlinks=True)
    for path in [task, *task.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o555 if path.is_dir() else 0o444)
    return task


def _as_unprivileged() -> dict[str, int]:
    """subprocess arguments that drop to nobody (Lambda never runs code as root); nothing when not root."""
    return {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}


def _hello(argv: list[str], env: dict[str, str], cwd: str, channel: Path,
           timeout_s: float = 60) -> tuple[dict | None, str]:
    """Start a worker, greet it as the host does, and return its first frame (``ready``) and its stderr.

    As the host does, the FIFO is created before the spawn and both its ends are held, so that it never reads
    as closed before the worker opens it; frames arrive on it, one JSON object per line."""
    import select

    os.mkfifo(channel, 0o600)
    if os.geteuid() == 0:
        os.chown(channel, 65534, 65534)  # the worker runs as nobody and opens the FIFO for writing
    reader = os.open(channel, os.O_RDONLY | os.O_NONBLOCK)
    keeper = os.open(channel, os.O_WRONLY | os.O_NONBLOCK)
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                               cwd=cwd, **_as_unprivileged())
    assert process.stdin is not None and process.stderr is not None
    frame = None
    try:
        process.stdin.write(b'{"t": "hello"}\n')
        process.stdin.flush()
        buffered = b""
        deadline = time.monotonic() + timeout_s
        while frame is None and time.monotonic() < deadline and process.poll() is None:
            readable, _, _ = select.select([reader], [], [], 0.5)
            if readable:
                buffered += os.read(reader, 65536)
            if b"\n" in buffered:
                frame = json.loads(buffered.split(b"\n", 1)[0])
    finally:
        os.close(keeper)
        os.close(reader)
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()   # the bootstrap exits when its stdin ends
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return frame, process.stderr.read().decode("utf-8", "replace")


def test_bundled_functions_start_from_a_read_only_cache_as_an_unprivileged_user(shop_project):
    """Each packaged function's worker, with the exact command line a runtime Lambda uses, loads its module from
    the read-only bundle (its vendored imports read through links from the writable state dir, which is
    DENO_DIR) as a non-root user with no network, and reports ready."""
    from functions.runtime.sandbox import BOOTSTRAP, link_vendored_cache, worker_command
    from functions.shared.manifest import load_project

    asset = build_asset("runtime", shop_project)
    scratch = Path(tempfile.mkdtemp(prefix="flux-ro-"))   # outside pytest's private (0700) tmp tree
    try:
        scratch.chmod(0o755)
        task = _read_only_copy(asset.path, scratch)
        deno = scratch / "deno"
        shutil.copy2(deno_executable(), deno)
        deno.chmod(0o555)
        state = scratch / "state"   # the worker's writable cache dir, /tmp in Lambda
        state.mkdir(mode=0o777)
        state.chmod(0o777)
        assert not os.access(task / BUNDLE_DENO_DIR, os.W_OK) or os.geteuid() == 0
        project = load_project(task / BUNDLE_PROJECT_DIR)
        link_vendored_cache(task / BUNDLE_DENO_DIR, state)   # what Runtime does with RuntimeOptions.deno_dir
        bootstrap = task / "functions" / "runtime" / "bootstrap" / BOOTSTRAP.name
        for spec in project.functions.values():
            channel = state / f"{spec.name}.channel"
            command = worker_command(spec, deno=str(deno), cache_dir=state, project_root=project.root,
                                     channel=channel, namespace=False)
            argv = [str(bootstrap) if arg == str(BOOTSTRAP) else arg for arg in command.argv]
            argv.insert(2, "--cached-only")   # a download attempt would fail the test, not hang on the network
            ready, stderr = _hello(argv, command.env, command.cwd, channel)
            assert ready == {"t": "ready", "error": None}, (spec.name, stderr[-2000:])
            assert "Permission denied" not in stderr and "Read-only" not in stderr, stderr
        # The transpile cache went to the writable state dir (a read-only DENO_DIR makes Deno sleep ~150 ms
        # per module retrying that write), and nothing was written into the bundle.
        assert (state / "gen").is_dir() and not (task / BUNDLE_DENO_DIR / "gen").exists()
    finally:
        for path in scratch.rglob("*"):
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(scratch, ignore_errors=True)


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
