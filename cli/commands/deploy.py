"""`flux synth`, `flux deploy`, `flux destroy`: thin wrappers over infra/deploy.py.

Register as ``app.command("synth")(deploy.synth_cmd)``, ``app.command("deploy")(deploy.deploy_cmd)``
and ``app.command("destroy")(deploy.destroy_cmd)``. Every failure prints one
``error:`` line per problem with what to do, and exits with code 1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cli.output import console, err_console, fail, print_json
from functions.aws.names import OUTPUT_ENGINE_FUNCTION as ENGINE_OUTPUT
from functions.shared.errors import FluxError
from functions.shared.manifest import ManifestError, load_project

# jsii prints a banner about the Node version on every start unless told not to; set before aws_cdk is imported.
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")

Directory = Annotated[Path, typer.Argument(help="Project folder.")]
Stage = Annotated[str, typer.Option("--stage", "-s", help="Stage name: one stack per project and stage.")]
OutDir = Annotated[Path, typer.Option("--out", "-o", help="Cloud assembly folder (the template goes here).")]
Arch = Annotated[str, typer.Option("--arch", help="Lambda architecture: x86_64 or arm64.")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _fail_flux(exc: FluxError) -> None:
    if isinstance(exc, ManifestError):
        err_console.print("[bold red]flux.json is invalid:[/]")
        for problem in exc.problems:
            err_console.print(f"  {problem}")
        raise typer.Exit(1)
    fail(exc.message)


def _synth(directory: Path, stage: str, out: Path, arch: str, *, quiet: bool):
    from infra.deploy import synthesize

    if arch not in ("x86_64", "arm64"):
        fail(f"--arch {arch!r}: use x86_64 or arm64")
    try:
        if quiet:
            return synthesize(directory, stage=stage, outdir=out, arch=arch)
        with err_console.status("building Lambda assets and synthesizing (cached after the first run)..."):
            return synthesize(directory, stage=stage, outdir=out, arch=arch)
    except FluxError as exc:
        _fail_flux(exc)
        raise


def _print_summary(result) -> None:
    summary = result.summary()
    console.print(f"[green]template[/] {result.template}  ({summary['seconds']} s)", soft_wrap=True)
    console.print(f"stack {summary['stack']}, database: {summary['database']}")
    for fn in summary["functions"]:
        extra = " async" if fn["async"] else ""
        console.print(f"  {fn['route']:<32} {fn['name']:<24} auth={fn['auth']} authorizer={fn['authorizer']}{extra}",
                      soft_wrap=True)
    for queue in summary["queues"]:
        kind = "FIFO" if queue["fifo"] else "standard"
        console.print(f"  queue {queue['function']}: {kind}, maxReceiveCount {queue['max_receive_count']}, "
                      f"visibility {queue['visibility_timeout_s']} s", soft_wrap=True)
    _print_always_on(summary)
    for warning in summary["warnings"]:
        err_console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)


def _print_always_on(summary: dict) -> None:
    """What the stage costs while idle, so leaving it running is a decision (infra/always_on.py)."""
    from rich.table import Table

    table = Table(title=f"always on ({summary['profile']} profile): ~${summary['always_on_monthly_usd']:.2f}/month "
                        "floor, us-east-1 list prices", title_justify="left")
    for column in ("resource", "count", "why", "$/month"):
        table.add_column(column, justify="right" if column in ("count", "$/month") else "left")
    for row in summary["always_on"]:
        table.add_row(row["resource"], str(row["count"]), row["why"], f"{row['monthly_usd']:.2f}")
    console.print(table)


def synth_cmd(directory: Directory = Path("."), stage: Stage = "dev", out: OutDir = Path("cdk.out"),
              arch: Arch = "x86_64", as_json: AsJson = False) -> None:
    """Write the CloudFormation template (no AWS account or credentials needed)."""
    result = _synth(directory, stage, out, arch, quiet=as_json)
    if as_json:
        print_json(result.summary())
        return
    _print_summary(result)


def _identity():
    from infra.preflight import PreflightFailed, check_identity

    try:
        return check_identity()
    except PreflightFailed as exc:
        for what, todo in exc.problems:
            err_console.print(f"[bold red]error:[/] {what}")
            err_console.print(f"  [dim]{todo}[/]")
        raise typer.Exit(1) from None


def _concurrency(identity, reserving: int) -> None:
    """Stop before CloudFormation when the account cannot hold the stack's reserved concurrency."""
    from infra.preflight import PreflightFailed, check_concurrency

    try:
        room = check_concurrency(identity, reserving)
    except PreflightFailed as exc:
        for what, todo in exc.problems:
            err_console.print(f"[bold red]error:[/] {what}", soft_wrap=True)
            err_console.print(f"  [dim]{todo}[/]", soft_wrap=True)
        raise typer.Exit(1) from None
    for warning in room.warnings() if room is not None else []:
        err_console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)


def deploy_cmd(directory: Directory = Path("."), stage: Stage = "dev", out: OutDir = Path("cdk.out"),
               arch: Arch = "x86_64",
               review: Annotated[bool, typer.Option("--review", help="Ask before widening IAM permissions.")] = False,
               as_json: AsJson = False) -> None:
    """Deploy the project to AWS (checks credentials first) and print its HTTPS endpoints."""
    from infra.deploy import deploy, endpoints
    from infra.errors import InfraError
    from infra.preflight import check_bootstrap

    try:
        project = load_project(directory)
    except ManifestError as exc:
        _fail_flux(exc)
    identity = _identity()
    if check_bootstrap(identity) is False:
        fail(f"the AWS account {identity.account} is not bootstrapped for the CDK in {identity.region}",
             hint=f"run once: npx aws-cdk@2 bootstrap aws://{identity.account}/{identity.region}")
    if not as_json:
        err_console.print(f"deploying as {identity.arn} to {identity.region}")
    result = _synth(directory, stage, out, arch, quiet=as_json)
    _concurrency(identity, result.plan.reserved_concurrency)
    try:
        outputs = deploy(result, region=identity.region, account=identity.account,
                         database_url=project.config.database.url, approval="broadening" if review else "never")
    except InfraError as exc:
        fail(exc.message)
    api_url = outputs.get("ApiUrl", "")
    routes = endpoints(result.plan, api_url)
    migrations = _migrate(result.plan.stack_name, outputs, identity.region, quiet=as_json)
    if as_json:
        print_json({"stack": result.plan.stack_name, "outputs": outputs, "migrations": migrations,
                    "endpoints": {name: route for name, route in routes}})
        return
    console.print(f"[green]deployed[/] {result.plan.stack_name}")
    if migrations is not None:
        from cli.commands.db import print_report

        print_report(migrations, console)
    console.print(f"  api        {api_url}")
    console.print(f"  dashboard  {outputs.get('DashboardUrl', '')}")
    for name, route in routes:
        console.print(f"  {name:<24} {route}")
    console.print(f"\nadmin key for the dashboard: flux keys create --name admin --scope admin "
                  f"--table {outputs.get('KeysTableName', '<KeysTableName>')} --region {identity.region}")


def _migrate(stack: str, outputs: dict[str, str], region: str, *, quiet: bool) -> dict | None:
    """Apply the schema/ migrations through the new stage's engine Lambda (None: the stack has no database)."""
    from infra.errors import InfraError
    from infra.remote import migrate_stage

    if not outputs.get(ENGINE_OUTPUT):
        return None
    try:
        if quiet:
            return migrate_stage(outputs, stack, region=region)
        with err_console.status("applying migrations through the engine function..."):
            return migrate_stage(outputs, stack, region=region)
    except InfraError as exc:
        fail(f"deployed {stack}, but {exc.message}", hint="fix the migration, then: flux db migrate --stage <stage>")


def destroy_cmd(directory: Directory = Path("."), stage: Stage = "dev",
                yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False
                ) -> None:
    """Delete the project's stack for a stage (the prod stage keeps its tables and database)."""
    from infra.deploy import destroy
    from infra.errors import InfraError
    from infra.plan import stack_name

    try:
        project = load_project(directory)
    except ManifestError as exc:
        _fail_flux(exc)
    name = stack_name(project.config.name, stage)
    identity = _identity()
    if not yes and not typer.confirm(f"delete stack {name} in {identity.region} (account {identity.account})?"):
        raise typer.Exit(1)
    try:
        with err_console.status(f"deleting {name}..."):
            existed = destroy(name, region=identity.region, on_progress=err_console.print)
    except InfraError as exc:
        fail(exc.message)
    if not existed:
        fail(f"there is no stack {name} in {identity.region}")
    console.print(f"[green]deleted[/] {name}")
