"""Where a runtime Lambda's INIT goes, phase by phase, under the Lambda's own Python (3.12).

    .venv/bin/python bench/lambda_init.py <cdk.out>/asset.<runtime asset> [--rounds 5] [--function hello]

Each round is a fresh 3.12 process with the asset and the deployed tier's emulated ``/var/runtime``
(boto3, botocore) on ``sys.path``, as the managed runtime sets it. It times, in CPU ms (less
sensitive than wall time to the other work on a shared machine): the interpreter alone (the
baseline every Python Lambda pays), ``import functions.aws.entry_http`` (the handler import),
``load_project`` (the manifest, as the Lambda loads it: the packaged, pre-validated bundle when there
is one, :func:`functions.shared.manifest_bundle.load_packaged_project`), and ``build_state`` (span sink, Runtime,
pipeline: the rest of what INIT does). Ratios are against the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.deployed.harness.runtime_image import build_runtime_image

PROBE = r"""
import json, os, sys, time
clock = time.process_time
t0 = clock()
from functions.aws import runtime_state
t1 = clock()
from functions.shared.manifest_bundle import load_packaged_project
load_packaged_project(runtime_state.project_root(os.environ))
t2 = clock()
runtime_state.build_state("http")
t3 = clock()
print(json.dumps({"handler_import": (t1 - t0) * 1000, "load_project": (t2 - t1) * 1000,
                  "build_state": (t3 - t2) * 1000}))
"""


def probe_env(asset: Path, runtime: Path, function: str, state: Path) -> dict[str, str]:
    deno = os.environ.get("FLUX_DENO") or str(Path(sys.prefix) / "bin" / "deno")
    # PYTHONDONTWRITEBYTECODE: the emulated /var/runtime is a shared cache, read-only in the tier; writing
    # __pycache__ into it would change every later deployed-tier run.
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{asset}:{runtime}", "PYTHONDONTWRITEBYTECODE": "1",
            "FLUX_FUNCTION": function, "FLUX_PROJECT_DIR": str(asset / "project"), "FLUX_STATE_DIR": str(state),
            "FLUX_DENO": deno,
            "SPANS_TABLE": "bench-spans", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}


def measure(python: str, env: dict[str, str]) -> tuple[float, dict[str, float]]:
    baseline = subprocess.run([python, "-S", "-B", "-c", "import time; print(time.process_time() * 1000)"],
                              capture_output=True, text=True, env=env, check=True)
    phases = subprocess.run([python, "-S", "-B", "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    return float(baseline.stdout), json.loads(phases.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("asset", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--function", default="hello")
    args = parser.parse_args()
    image = build_runtime_image()
    python = str(image.lang / "bin" / "python3.12")
    with tempfile.TemporaryDirectory(prefix="flux-lambda-init-") as state:
        env = probe_env(args.asset.resolve(), image.runtime, args.function, Path(state))
        rounds = [measure(python, env) for _ in range(args.rounds)]
    base = statistics.median(b for b, _ in rounds)
    print(f"interpreter start (baseline): {base:.0f} CPU ms (median of {args.rounds})")
    for phase in ("handler_import", "load_project", "build_state"):
        value = statistics.median(p[phase] for _, p in rounds)
        print(f"{phase:>15}: {value:6.0f} CPU ms  ({value / base:4.1f} x baseline)")


if __name__ == "__main__":
    main()
