"""Synthesize, deploy and destroy a project's stack; what `flux synth|deploy|destroy` call.

* :func:`synthesize` builds the cached assets and writes the cloud assembly
  in-process (no CDK CLI, no AWS account, no network to AWS).
* :func:`deploy` hands that assembly to the CDK CLI (``cdk deploy --app <dir>``),
  which uploads the assets and runs CloudFormation. The CLI is the ``cdk`` on PATH
  when installed, else ``npx --yes aws-cdk@2`` (fetched from the npm registry on
  first use); the Python app is not re-run, so what was synthesized is what deploys.
* :func:`destroy` deletes the stack with CloudFormation directly (no assets needed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from functions.shared.aws_clients import session_client
from infra.always_on import AlwaysOn, always_on, monthly_floor
from infra.errors import InfraError
from infra.plan import StackPlan

CDK_PACKAGE = "aws-cdk@2"


@dataclass
class SynthResult:
    template: Path
    assembly: Path
    plan: StackPlan
    seconds: float
    warnings: list[str] = field(default_factory=list)
    always_on: list[AlwaysOn] = field(default_factory=list)  # what the stage costs idle (infra/always_on.py)

    def summary(self) -> dict[str, Any]:
        return {
            "stack": self.plan.stack_name, "template": str(self.template), "assembly": str(self.assembly),
            "seconds": round(self.seconds, 2),
            "functions": [{"name": f.name, "route": None if f.internal else f.route_key, "auth": f.auth,
                           "authorizer": f.authorizer, "async": f.queue is not None, "timeout_s": f.timeout_s,
                           "memory_mb": f.memory_mb}
                          for f in self.plan.functions],
            "queues": [{"function": f.name, "fifo": f.queue.fifo, "max_receive_count": f.queue.max_receive_count,
                        "visibility_timeout_s": f.queue.visibility_timeout_s}
                       for f in self.plan.functions if f.queue is not None],
            "database": self.plan.database.mode,
            "profile": self.plan.profile.name,
            "always_on": [row.as_dict() for row in self.always_on],
            "always_on_monthly_usd": monthly_floor(self.always_on),
            "warnings": self.warnings,
        }


class SynthFailed(InfraError):
    status, code = 400, "synth_failed"


def synthesize(project_dir: str | Path, *, stage: str = "dev", outdir: str | Path = "cdk.out",
               arch: str = "x86_64") -> SynthResult:
    """Write the cloud assembly for ``project_dir`` at ``stage`` into ``outdir``; real (cached) assets."""
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")
    from infra.app import build_app
    from infra.stack import StackOptions

    started = time.perf_counter()
    outdir = Path(outdir).resolve()
    built = build_app(project_dir, StackOptions(stage=stage, arch=arch), outdir=outdir)
    try:
        built.app.synth()
    except RuntimeError as exc:
        report = outdir / "validation-report.json"
        if "ValidationFailed" in str(exc) and report.is_file():
            raise SynthFailed(f"cdk-nag found unacknowledged problems; see {report}") from None
        raise SynthFailed(f"synth failed: {exc}") from None
    template = outdir / f"{built.plan.stack_name}.template.json"
    return SynthResult(template, outdir, built.plan, time.perf_counter() - started, built.plan.warnings(),
                       always_on(json.loads(template.read_text(encoding="utf-8"))))


def cdk_command(which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """The CDK CLI to run: an installed ``cdk``, else ``npx --yes aws-cdk@2``."""
    installed = which("cdk")
    if installed:
        return [installed]
    npx = which("npx")
    if npx:
        return [npx, "--yes", CDK_PACKAGE]
    raise InfraError("the AWS CDK CLI is needed to deploy: install Node.js (for npx) or `npm install -g aws-cdk`")


def deploy_arguments(result: SynthResult, *, outputs_file: Path, database_url: str | None,
                     approval: str = "never") -> list[str]:
    args = ["deploy", "--app", str(result.assembly), result.plan.stack_name, "--require-approval", approval,
            "--outputs-file", str(outputs_file), "--progress", "events"]
    if result.plan.database.mode == "url":
        if not database_url:
            raise InfraError("database.url is the database mode but no URL was given")
        from infra.constructs.database import DATABASE_URL_PARAMETER

        args += ["--parameters", f"{DATABASE_URL_PARAMETER}={database_url}"]
    return args


def deploy(result: SynthResult, *, region: str, account: str, database_url: str | None = None,
           approval: str = "never", runner: Callable[..., subprocess.CompletedProcess] = subprocess.run
           ) -> dict[str, str]:
    """Run ``cdk deploy`` on the synthesized assembly; the stack outputs (ApiUrl, DashboardUrl, ...)."""
    outputs_file = result.assembly / "outputs.json"
    outputs_file.unlink(missing_ok=True)
    command = cdk_command() + deploy_arguments(result, outputs_file=outputs_file, database_url=database_url,
                                               approval=approval)
    env = {**os.environ, "AWS_REGION": region, "AWS_DEFAULT_REGION": region, "CDK_DEFAULT_REGION": region,
           "CDK_DEFAULT_ACCOUNT": account}
    completed = runner(command, env=env, check=False)
    if completed.returncode != 0:
        raise InfraError(f"cdk deploy failed (exit {completed.returncode}); its output above says why")
    if not outputs_file.is_file():
        raise InfraError(f"cdk deploy finished but wrote no outputs to {outputs_file}")
    outputs = json.loads(outputs_file.read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in outputs.get(result.plan.stack_name, {}).items()}


def endpoints(plan: StackPlan, api_url: str) -> list[tuple[str, str]]:
    """``(function, "METHOD https://.../route")`` for each function with a public route (not the internal ones)."""
    base = api_url.rstrip("/")
    return [(fn.name, f"{fn.method} {base}{fn.route}") for fn in plan.routed_functions]


def destroy(stack_name: str, *, region: str, session_factory: Callable[[], Any] | None = None,
            on_progress: Callable[[str], None] = lambda _line: None) -> bool:
    """Delete the stack and wait; False when there was no such stack."""
    from botocore.exceptions import ClientError, WaiterError

    if session_factory is None:
        import boto3

        session_factory = boto3.session.Session
    # CloudFormation's delete waiter polls for minutes; each call still fails fast.
    client = session_client(session_factory(), "cloudformation", region=region)
    try:
        client.describe_stacks(StackName=stack_name)
    except ClientError as exc:
        if "does not exist" in str(exc):
            return False
        raise InfraError(f"cannot read stack {stack_name}: {exc}") from None
    client.delete_stack(StackName=stack_name)
    on_progress(f"deleting {stack_name} in {region} (tables and database of the prod stage are kept)")
    try:
        client.get_waiter("stack_delete_complete").wait(StackName=stack_name,
                                                        WaiterConfig={"Delay": 10, "MaxAttempts": 180})
    except WaiterError as exc:
        raise InfraError(f"deleting {stack_name} did not finish: {exc}") from None
    return True
