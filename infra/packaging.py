"""Lambda code assets, built without Docker and cached.

Two code assets (plus the deno layer from layers/deno):

* ``runtime`` — runtime Lambdas (HTTP entry and queue consumer) and the engine
  Lambda: every Python dependency, the ``functions`` package, the user project
  under ``project/`` and, under ``deno_dir/``, a Deno cache holding the project's
  npm/jsr/https imports, filled at build time with ``deno install --entrypoint``
  so that no download happens at cold start (the worker points ``DENO_DIR`` at
  it; Deno only reads it, so the read-only ``/var/task`` is fine);
* ``control`` — the authorizer and the observability API: the same code without
  psycopg and the Deno cache, so the Lambda in front of every request stays small.

Python dependencies are wheels for the Lambda platform, installed with
``pip install --platform ... --only-binary=:all: --python-version 3.12 --target``
and pinned by ``requirements.lock`` (as a constraints file). boto3 is left out:
the Lambda runtime ships it, and bundling it would add ~36 MB to every cold start.

Python bytecode is compiled into the bundle at build time (``__pycache__`` next to each
module, ``unchecked-hash`` pycs) by a CPython of the Lambda runtime's version: ``/var/task``
is read-only, so without them every cold start recompiles every imported module. A
bundle built where no such interpreter exists (see :func:`lambda_python`) ships without
bytecode and says so in the log.

The project's manifest, validated at build time, is written into ``project/`` as JSON
(``.flux-project.json``); the Lambda reads the same Project back from it without pydantic
(:func:`functions.shared.manifest_bundle.load_bundle`): validating took most of INIT, importing pydantic
more than half of what was left.

Everything lands under :func:`cache_root` (``$FLUX_BUILD_CACHE`` or
``~/.cache/flux/build``), keyed by a hash of what went in, and is built in a
temporary folder that is renamed into place, so a cache entry is always complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from functions.aws import names
from functions.shared.links import check_project_links
from functions.shared.manifest import Project
from functions.shared.manifest_bundle import BUNDLE_NAME as BUNDLE_MANIFEST
from functions.shared.manifest_bundle import dump_bundle
from infra.errors import InfraError

_log = logging.getLogger("flux.infra.packaging")
REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_PACKAGE = REPO_ROOT / "functions"
LOCK_FILE = REPO_ROOT / "requirements.lock"
LAYER_BUILDER = REPO_ROOT / "layers" / "deno" / "build.py"

# The oldest Python whose Lambda runtime is Amazon Linux 2023: deno needs glibc >= 2.27 (see layers/deno/build.py).
LAMBDA_PYTHON = "3.12"
# pydantic: for the Data Engine (loaded on the first ctx.db call) and flux.json files not packaged; msgspec: frames.
RUNTIME_REQUIREMENTS = ("pydantic", "msgspec", "psycopg[binary]", "psycopg-pool", "jsonschema", "pyjwt[crypto]",
                        "httpx")
CONTROL_REQUIREMENTS = ("pydantic", "jsonschema", "pyjwt[crypto]", "httpx")
_MANYLINUX = ("manylinux_2_34", "manylinux_2_28", "manylinux_2_27", "manylinux_2_17", "manylinux2014")
_MACHINE = {"x86_64": "x86_64", "arm64": "aarch64"}
_SKIP_NAMES = {"__pycache__", ".flux", ".git", ".venv", "venv", "node_modules", "cdk.out", ".pytest_cache",
               ".DS_Store", ".mypy_cache", ".ruff_cache"}

AssetKind = Literal["runtime", "control"]
AssetMode = Literal["build", "placeholder"]
BUNDLE_FORMAT = "3"  # 2: bytecode compiled in; 3: the validated manifest; bump when the layout changes
BUNDLE_PROJECT_DIR = names.BUNDLE_PROJECT_DIR
BUNDLE_DENO_DIR = names.BUNDLE_DENO_DIR
KEEP_BUNDLES = 3
PRUNE_GRACE_S = 3600


class BuildError(InfraError):
    """A Lambda asset or the layer could not be built; the message names the step."""

    status, code = 500, "build_failed"


@dataclass(frozen=True, slots=True)
class LambdaTarget:
    """The Lambda platform wheels are chosen for; ``host`` builds for this interpreter instead (tests)."""

    arch: Literal["x86_64", "arm64"] = "x86_64"
    python: str = LAMBDA_PYTHON
    host: bool = False

    def pip_platform_args(self) -> list[str]:
        if self.host:
            return []
        tag = self.python.replace(".", "")
        args = ["--only-binary=:all:", "--python-version", self.python, "--implementation", "cp",
                "--abi", f"cp{tag}", "--abi", "abi3", "--abi", "none"]
        for platform in _MANYLINUX:
            args += ["--platform", f"{platform}_{_MACHINE[self.arch]}"]
        return args

    def key(self) -> str:
        if self.host:
            return f"host-py{sys.version_info.major}{sys.version_info.minor}"
        return f"{self.arch}-py{self.python.replace('.', '')}"


@dataclass(frozen=True, slots=True)
class Asset:
    path: Path
    hash: str


def cache_root() -> Path:
    explicit = os.environ.get("FLUX_BUILD_CACHE")
    if explicit:
        return Path(explicit).expanduser().resolve()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "flux" / "build"


def _digest(*parts: str | bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode() if isinstance(part, str) else part)
        hasher.update(b"\0")
    return hasher.hexdigest()


def _walk(root: Path) -> Iterable[Path]:
    """Files under ``root`` in a stable order, skipping caches, VCS folders and local state."""
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part in _SKIP_NAMES or part.endswith((".pyc", ".egg-info")) for part in relative.parts):
            continue
        if path.is_file():
            yield path


def tree_hash(root: Path) -> str:
    hasher = hashlib.sha256()
    for path in _walk(root):
        hasher.update(str(path.relative_to(root)).encode())
        hasher.update(b"\0")
        hasher.update(hashlib.sha256(path.read_bytes()).digest())
    return hasher.hexdigest()


def _copy_tree(source: Path, destination: Path) -> None:
    for path in _walk(source):
        target = destination / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def _link_tree(source: Path, destination: Path) -> None:
    """Hard-link a cached dependency folder into a bundle (a copy when links are not possible)."""
    for path in source.rglob("*"):
        target = destination / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def _publish(staged: Path, target: Path) -> None:
    """Move a finished build into the cache; a concurrent build that finished first wins."""
    try:
        os.replace(staged, target)
    except OSError:
        if not target.is_dir():
            raise


def python_deps(requirements: Iterable[str], *, target: LambdaTarget = LambdaTarget(),
                cache: Path | None = None, lock_file: Path = LOCK_FILE) -> Path:
    """A folder with ``requirements`` installed for ``target``, pinned by ``lock_file``; cached."""
    requirements = sorted(requirements)
    cache = cache or cache_root()
    lock = lock_file.read_bytes() if lock_file.is_file() else b""
    key = _digest(json.dumps(requirements), lock, target.key())[:20]
    folder = cache / "python-deps" / f"{target.key()}-{key}"
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="deps-", dir=folder.parent) as scratch:
        staged = Path(scratch) / "site"
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
                   "--target", str(staged), *target.pip_platform_args(), *requirements]
        if lock:
            command += ["--constraint", str(lock_file)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = " / ".join((result.stderr or result.stdout).strip().splitlines()[-4:])
            raise BuildError(f"pip could not install {', '.join(requirements)} for {target.key()}: {tail}")
        shutil.rmtree(staged / "bin", ignore_errors=True)  # console scripts: nothing in Lambda runs them
        _publish(staged, folder)
    return folder


def layer_builder():
    """layers/deno/build.py, loaded by path: it is a standalone tool, not part of an installed package."""
    import importlib.util

    name = "flux_deno_layer_build"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, LAYER_BUILDER)
    if spec is None or spec.loader is None:
        raise BuildError(f"cannot load the layer builder at {LAYER_BUILDER}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is being built
    spec.loader.exec_module(module)
    return module


def deno_layer(arch: str = "x86_64", cache: Path | None = None) -> Path:
    """The deno layer folder (``bin/deno``), built by layers/deno/build.py; cached by version and arch."""
    builder = layer_builder()
    try:
        return builder.build_layer(cache or cache_root(), arch=arch).directory
    except builder.LayerBuildError as exc:
        raise BuildError(str(exc)) from exc


def vendor_imports(project_dir: Path, deno_dir: Path, deno: str, entries: Iterable[Path]) -> None:
    """Fill ``deno_dir`` with every remote import of ``entries`` (``deno install --entrypoint``).

    Run inside the bundled project so a ``deno.json`` there (import map, ``nodeModulesDir``)
    applies exactly as it will at run time. ``gen/`` (transpile cache keyed on absolute
    build paths, useless under /var/task) and the SQLite analysis caches are dropped afterwards:
    Deno rebuilds them in memory, and a read-only cache works (checked as an unprivileged user
    without network, with the bundle moved to another path).
    """
    files = [str(p) for p in entries]
    if not files:
        return
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(deno_dir), "DENO_DIR": str(deno_dir),
           "DENO_NO_UPDATE_CHECK": "1", "DENO_NO_PROMPT": "1", "NO_COLOR": "1"}
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "DENO_CERT", "DENO_TLS_CA_STORE", "NODE_EXTRA_CA_CERTS",
                 "SSL_CERT_FILE", "SSL_CERT_DIR", "NPM_CONFIG_REGISTRY"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    result = subprocess.run([deno, "install", "--quiet", "--entrypoint", *files], cwd=project_dir, env=env,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError("deno could not fetch the project's imports: "
                         + " / ".join(result.stderr.strip().splitlines()[-4:]))
    shutil.rmtree(deno_dir / "gen", ignore_errors=True)
    for leftover in deno_dir.glob("*_cache_v*"):  # SQLite analysis caches of this build machine, WAL files and all
        leftover.unlink()


def lambda_python(version: str = LAMBDA_PYTHON) -> str | None:
    """A CPython ``version`` to compile bytecode with (pycs must carry the Lambda runtime's magic number):
    ``$FLUX_LAMBDA_PYTHON``, this interpreter if it is that version, pyenv's ``versions/<version>.*``, then
    ``python<version>`` on PATH; each is run once to check it (a pyenv shim on PATH may not work)."""
    candidates = [os.environ.get("FLUX_LAMBDA_PYTHON"), sys.executable]
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates += [str(p) for p in sorted(pyenv_root.glob(f"versions/{version}.*/bin/python{version}"), reverse=True)]
    candidates.append(shutil.which(f"python{version}"))
    for candidate in candidates:
        if candidate and _python_version(candidate) == version:
            return candidate
    return None


def _python_version(python: str) -> str | None:
    try:
        result = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def compile_bytecode(bundle: Path, python: str | None) -> bool:
    """Write ``unchecked-hash`` pycs for the bundle's Python (not the user project, not the Deno cache).

    ``unchecked-hash``: the interpreter loads them without comparing source mtimes, which a zip upload
    does not preserve. A file that does not compile (a test file for another Python in some package)
    is left to be compiled at import, as before; only a missing interpreter means no bytecode at all."""
    if python is None:
        _log.warning("no CPython %s found (set FLUX_LAMBDA_PYTHON): the Lambda bundle ships without bytecode, "
                     "so cold starts compile every module", LAMBDA_PYTHON)
        return False
    skip = rf"[/\\]({re.escape(BUNDLE_PROJECT_DIR)}|{re.escape(BUNDLE_DENO_DIR)})[/\\]"
    result = subprocess.run([python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
                             "-x", skip, str(bundle)], capture_output=True, text=True, check=False)
    if result.returncode not in (0, 1):
        raise BuildError(f"compiling the bundle's bytecode failed: {(result.stderr or result.stdout)[-500:]}")
    return True


def _host_deno() -> str:
    from functions.runtime.sandbox import deno_executable

    return deno_executable()


def build_asset(kind: AssetKind, project: Project, *, target: LambdaTarget = LambdaTarget(),
                cache: Path | None = None, deno: str | None = None) -> Asset:
    """The bundle folder for ``kind``: deps + ``functions`` + ``project/`` (+ ``deno_dir/``); cached by content."""
    check_project_links(project.root, [spec.directory for spec in project.functions.values()])
    cache = cache or cache_root()
    deps = python_deps(RUNTIME_REQUIREMENTS if kind == "runtime" else CONTROL_REQUIREMENTS, target=target,
                       cache=cache)
    python = sys.executable if target.host else lambda_python(target.python)
    key = _digest(kind, BUNDLE_FORMAT, deps.name, tree_hash(FUNCTIONS_PACKAGE), tree_hash(project.root),
                  "pyc" if python else "no-pyc")[:24]
    family = f"{kind}-{project.config.name}-{target.key()}-"
    folder = cache / "assets" / f"{family}{key}"
    if folder.is_dir():
        _mark_used(folder)
        return Asset(folder, key)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{kind}-", dir=folder.parent) as scratch:
        staged = Path(scratch) / "bundle"
        _link_tree(deps, staged)
        _copy_tree(FUNCTIONS_PACKAGE, staged / "functions")
        bundled_project = staged / BUNDLE_PROJECT_DIR
        _copy_tree(project.root, bundled_project)
        # The manifest, validated here, for the Lambda to load without validating (manifest_bundle.load_bundle).
        (bundled_project / BUNDLE_MANIFEST).write_text(dump_bundle(project), encoding="utf-8")
        if kind == "runtime":
            entries = [bundled_project / spec.entry.relative_to(project.root) for spec in project.functions.values()]
            deno_dir = staged / BUNDLE_DENO_DIR
            deno_dir.mkdir()
            vendor_imports(bundled_project, deno_dir, deno or _host_deno(), sorted(entries))
        compile_bytecode(staged, python)
        _publish(staged, folder)
    _prune(folder.parent, family, keep=KEEP_BUNDLES)
    return Asset(folder, key)


def _mark_used(folder: Path) -> None:
    """A cache hit makes the bundle the newest of its family, so pruning never takes one that is in use."""
    try:
        os.utime(folder)
    except OSError:
        pass   # a read-only cache: nothing prunes it either


def _prune(parent: Path, family: str, *, keep: int, grace_s: float = PRUNE_GRACE_S) -> None:
    """Drop all but the ``keep`` newest bundles of one kind, project and target (every code edit makes one).

    Bundles used within ``grace_s`` are kept whatever their rank: another ``flux synth`` of a project of the
    same name (another stage or configuration, at the same time) may be handing one to the CDK right now."""
    bundles = sorted((p for p in parent.glob(f"{family}*") if p.is_dir()), key=lambda p: p.stat().st_mtime,
                     reverse=True)
    cutoff = time.time() - grace_s
    for old in bundles[keep:]:
        try:
            if old.stat().st_mtime >= cutoff:
                continue
        except OSError:
            continue
        shutil.rmtree(old, ignore_errors=True)


def placeholder_asset(cache: Path | None = None) -> Asset:
    """A one-file folder standing in for code assets in infra unit tests, which assert on the template only."""
    folder = (cache or cache_root()) / "assets" / "placeholder"
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "PLACEHOLDER"
    if not marker.is_file():
        marker.write_text("infra unit tests only: real synths bundle the functions package here\n", encoding="utf-8")
    return Asset(folder, "placeholder")


def folder_size(path: Path) -> int:
    """Bytes of all files under ``path`` (the unzipped size Lambda counts against its 250 MB limit)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
