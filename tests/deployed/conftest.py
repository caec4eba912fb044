"""The deployed tier's fixtures: synthesize with the real CLI, deploy into the emulation, tear everything down.

One deployment per session (starting moto, Postgres and cold Lambdas is the slow part),
run by one xdist worker (``xdist_group("deployed")``). Every process the tier starts is
in its own process group or PID namespace and is stopped by the fixture's finalizer, and
again at interpreter exit if pytest itself is interrupted.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deployed.harness.deployment import Deployment
from tests.deployed.harness.template import ACCOUNT, REGION

REPO = Path(__file__).resolve().parents[2]
FLUX = REPO / ".venv" / "bin" / "flux"
PROJECT = REPO / "examples" / "shop"
EXTRA_FUNCTIONS = Path(__file__).resolve().parent / "project"

pytestmark = pytest.mark.xdist_group("deployed")


# FLUX_DEPLOYED_PRODUCT=<a checkout of another commit> runs the tier against that tree's CLI, assets and
# handlers (how FINDINGS.md entries are reproduced on the commit they were found on).
PRODUCT = Path(os.environ["FLUX_DEPLOYED_PRODUCT"]).resolve() if os.environ.get("FLUX_DEPLOYED_PRODUCT") else None


def flux(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 180,
         input: str | None = None) -> subprocess.CompletedProcess[str]:
    """The product's CLI as a subprocess (never imported)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FLUX_"))}
    if PRODUCT is not None:
        command = [str(REPO / ".venv" / "bin" / "python"), "-P", "-m", "cli.main"]  # -P: not the cwd's cli/
        base["PYTHONPATH"] = str(PRODUCT)
    else:
        command = [str(FLUX)] if FLUX.exists() else ["flux"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout, input=input,
                          cwd=cwd or REPO, env={**base, "HOME": str(cwd or REPO), **(env or {})})


def make_project(base: Path) -> Path:
    """examples/shop plus the tier's extra functions (JWT, rate-limited, cached-authorizer and Response routes)
    and migrations (a multi-statement ``-- flux:no-transaction`` file), with tests/deployed/project's overrides."""
    root = base / "shop"
    shutil.copytree(PROJECT, root, ignore=shutil.ignore_patterns(".flux"))
    for function in (EXTRA_FUNCTIONS / "functions").iterdir():
        shutil.copytree(function, root / "functions" / function.name)
    for migration in (EXTRA_FUNCTIONS / "schema").iterdir():
        shutil.copy2(migration, root / "schema" / migration.name)
    config = json.loads((root / "flux.json").read_text())
    config.update(json.loads((EXTRA_FUNCTIONS / "flux.overrides.json").read_text()))
    (root / "flux.json").write_text(json.dumps(config, indent=2))
    return root


BUILD_CACHE = os.environ.get("FLUX_BUILD_CACHE") or str(Path.home() / ".cache" / "flux" / "build")


def synth(project: Path, stage: str, out: Path) -> dict[str, Any]:
    # The user's build cache (warm wheels and Deno caches), whatever HOME the CLI runs with.
    done = flux("synth", str(project), "--stage", stage, "--out", str(out), "--json", timeout=600,
                env={"FLUX_BUILD_CACHE": BUILD_CACHE}, cwd=out.parent)  # HOME = the work dir, not the repo
    if done.returncode != 0:
        raise RuntimeError(f"flux synth --stage {stage} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


class BackgroundSynth:
    """A `flux synth` running in a thread while the tests use the main deployment.

    One at a time, after the main synth: concurrent synths share the build cache and prune
    each other's bundles (FINDINGS.md F5).
    """

    _pool = None

    def __init__(self, project: Path, stage: str, out: Path) -> None:
        import concurrent.futures

        if BackgroundSynth._pool is None:
            BackgroundSynth._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth")
        self._future = BackgroundSynth._pool.submit(synth, project, stage, out)

    def result(self) -> dict[str, Any]:
        return self._future.result(timeout=900)

    @classmethod
    def drain(cls) -> None:
        """Cancel queued synths and wait for a running one, so nothing writes into a removed work dir."""
        if cls._pool is not None:
            cls._pool.shutdown(wait=True, cancel_futures=True)
            cls._pool = None


def url_mode_project(base: Path, project: Path) -> Path:
    """The same project with ``database.url`` (the URL itself is a deploy-time parameter, as `flux deploy` passes it)."""
    root = base / "shop-url"
    shutil.copytree(project, root)
    config = json.loads((root / "flux.json").read_text())
    # Its own application role: a role belongs to the whole server, which this stage shares with the main one.
    config["database"] = {"url": "postgresql://flux_admin@db.example.invalid:5432/shop", "app_role": "flux_app_url"}
    (root / "flux.json").write_text(json.dumps(config, indent=2))
    return root


# A secret that exists in the account before the stack, named by a partial ARN (no random suffix), as
# Secrets Manager's GetSecretValue accepts it and the ARN an operator knows before creating the secret.
EXISTING_SECRET_NAME = "flux-deployed/existing-db"
EXISTING_SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{EXISTING_SECRET_NAME}"


def secret_arn_project(base: Path, project: Path) -> Path:
    """The same project with ``database.secret_arn`` naming a pre-existing secret (created in moto before deploying)."""
    root = base / "shop-secret"
    shutil.copytree(project, root)
    config = json.loads((root / "flux.json").read_text())
    config["database"] = {"secret_arn": EXISTING_SECRET_ARN, "app_role": "flux_app_secret"}
    (root / "flux.json").write_text(json.dumps(config, indent=2))
    return root


@pytest.fixture(scope="session")
def other_synths(project: Path, workdir: Path, synthesized: dict[str, Any]) -> dict[str, BackgroundSynth]:
    """Queued once the dev synth is done: the prod stage of the same project, its database.url variant and
    its database.secret_arn variant."""
    return {"prod": BackgroundSynth(project, "prod", workdir / "cdk.out-prod"),
            "url": BackgroundSynth(url_mode_project(workdir, project), "urlmode", workdir / "cdk.out-url"),
            "secret": BackgroundSynth(secret_arn_project(workdir, project), "secretarn", workdir / "cdk.out-secret")}


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="flux-deployed-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        BackgroundSynth.drain()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def project(workdir: Path) -> Path:
    return make_project(workdir)


@pytest.fixture(scope="session")
def synthesized(project: Path, workdir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    summary = synth(project, "dev", workdir / "cdk.out")
    summary["synth_seconds"] = round(time.perf_counter() - started, 1)
    return summary


REPORT = REPO / "tests" / "artifacts" / "deployed-metrics.json"


def write_report(deployment: Deployment, synthesized: dict[str, Any], deploy_seconds: float) -> None:
    """Cold starts, INIT and warm invocations per function, for the closing note and bench/."""
    def stats(values: list[float]) -> dict[str, float] | None:
        if not values:
            return None
        ordered = sorted(values)
        return {"n": len(ordered), "min_ms": round(ordered[0], 1), "p50_ms": round(ordered[len(ordered) // 2], 1),
                "max_ms": round(ordered[-1], 1)}

    functions = {}
    for name, metrics in deployment.lambdas.metrics.items():
        spec = deployment.lambdas.specs[name]
        if not (metrics.cold_start_ms or metrics.warm_ms):
            continue
        functions[f"{spec.variables.get('FLUX_FUNCTION', spec.logical_id)} ({spec.handler})"] = {
            "cold_start": stats(metrics.cold_start_ms), "init": stats(metrics.init_ms), "warm": stats(metrics.warm_ms),
            # Extension time after the response (Lambda's PostRuntimeExtensionsDuration): billed, not waited for.
            "post_runtime": stats([r.post_runtime_ms for r in metrics.results
                                   if r.invocation is not None and r.invocation.extensions])}
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps({"synth_seconds": synthesized.get("synth_seconds"),
                                  "deploy_seconds": round(deploy_seconds, 1),
                                  "memory_enforced": deployment.lambdas.memory_enforced,
                                  "functions": functions, "scenarios": deployment.lambdas.scenarios}, indent=2))


@pytest.fixture(scope="session")
def deployed(synthesized: dict[str, Any], workdir: Path, other_synths: dict[str, BackgroundSynth]
             ) -> Iterator[Deployment]:
    started = time.perf_counter()
    deployment = Deployment(Path(synthesized["assembly"]), synthesized["stack"], workdir / "run")
    deploy_seconds = time.perf_counter() - started
    atexit.register(deployment.close)
    try:
        yield deployment
    finally:
        try:
            write_report(deployment, synthesized, deploy_seconds)
        finally:
            deployment.close()


def function_name(deployment: Deployment, flux_function: str, *, entry: str = "http") -> str:
    """The physical name of a Flux function's Lambda, found from the template's wiring, not handler names:
    ``http`` is a route integration's target, ``worker`` an SQS event source mapping's."""
    if entry == "http":
        targets = {deployment.lambdas.find(route.function).name for route in deployment.api.model.routes}
    else:
        targets = {deployment.lambdas.find(mapping.function).name for mapping in deployment.mappings}
    for name in targets:
        if deployment.lambdas.specs[name].variables.get("FLUX_FUNCTION") == flux_function:
            return name
    raise KeyError(f"no {entry} Lambda for {flux_function}")


def role_name(deployment: Deployment, role: str) -> str:
    """The authorizer (the routes' REQUEST authorizer) or the engine (the ``EngineFunctionName`` output)."""
    if role == "authorizer":
        function = next(r.authorizer.function for r in deployment.api.model.routes if r.authorizer is not None)
        return deployment.lambdas.find(function).name
    if role == "engine":
        return deployment.lambdas.find(deployment.outputs["EngineFunctionName"]).name
    raise KeyError(role)


JWT_SECRET = "deployed-tier-hs256-secret-0123456789abcdef"


@pytest.fixture(scope="session")
def jwt_secret(cli: Callable[..., subprocess.CompletedProcess[str]], project: Path) -> str:
    """The project's HS256 JWT secret, stored the way a user would: `flux secrets set --stage dev`."""
    done = cli("secrets", "set", "JWT_SECRET", "--stage", "dev", "-C", str(project), input=JWT_SECRET + "\n")
    assert done.returncode == 0, f"flux secrets set --stage dev failed:\n{done.stdout}\n{done.stderr}"
    return JWT_SECRET


@pytest.fixture(scope="session")
def api(deployed: Deployment, jwt_secret: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=deployed.api.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def cli(deployed: Deployment, workdir: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`flux ...` against the emulated account (its endpoints and credentials), from a scratch home."""
    home = workdir / "home"
    home.mkdir(exist_ok=True)

    def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return flux(*args, env={**deployed.client_env(), **kwargs.pop("env", {})}, cwd=home, **kwargs)

    return run


@pytest.fixture(scope="session")
def admin_key(cli: Callable[..., subprocess.CompletedProcess[str]], deployed: Deployment) -> str:
    """One admin API key for the scenarios that read the hosted observability API, made with `flux keys create`."""
    done = cli("keys", "create", "--name", "deployed-admin", "--scope", "admin", "--table",
               deployed.outputs["KeysTableName"], "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["key"]


def wait_for(predicate: Callable[[], Any], *, timeout: float = 30, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s")
        time.sleep(interval)


@pytest.fixture(scope="session")
def migrated_stage(cli: Callable[..., subprocess.CompletedProcess[str]], project: Path) -> dict[str, Any]:
    """`flux db migrate --stage dev`: the engine Lambda applies schema/ (what `flux deploy` runs after deploying)."""
    done = cli("db", "migrate", "--stage", "dev", "-C", str(project), "--json")
    assert done.returncode == 0, f"flux db migrate --stage dev failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)
