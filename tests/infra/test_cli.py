"""`flux synth` and `flux deploy` as a user runs them, with no AWS credentials anywhere in the environment."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from functions.shared.manifest import load_project
from infra.deploy import cdk_command
from infra.errors import InfraError
from infra.preflight import PreflightFailed, check_bootstrap, check_identity
from tests.infra.conftest import REPO, SHOP, no_aws_env


def run_command(command: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """One of cli/commands/deploy.py's commands through typer, as `flux <command>` will run it."""
    code = f"import typer; from cli.commands.deploy import {command}; typer.run({command})"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=600, check=False)


def test_synth_examples_shop_with_real_assets_and_no_aws_credentials(tmp_path: Path) -> None:
    out = tmp_path / "cdk.out"
    result = run_command("synth_cmd", str(SHOP), "--out", str(out), "--json", env=no_aws_env())
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    template = json.loads(Path(summary["template"]).read_text())
    project = load_project(SHOP)
    routes = {r["Properties"]["RouteKey"] for r in template["Resources"].values()
              if r["Type"] == "AWS::ApiGatewayV2::Route"}
    assert {f"{s.method} {s.route}" for s in project.functions.values()} <= routes
    assert {f["name"] for f in summary["functions"]} == set(project.functions)
    assert summary["profile"] == "dev" and summary["always_on_monthly_usd"] > 0
    assert "RDS Proxy" not in {row["resource"] for row in summary["always_on"]}
    # real code: the staged assets hold the bundle and the deno binary, not the placeholder
    assets = json.loads((out / "flux-shop-dev.assets.json").read_text())["files"]
    staged = [out / a["source"]["path"] for a in assets.values() if a["source"].get("packaging") == "zip"]
    assert any((p / "functions" / "aws" / "entry_http.py").is_file() for p in staged)
    assert any((p / "bin" / "deno").is_file() for p in staged)
    assert not any((p / "PLACEHOLDER").exists() for p in staged)


def test_synth_human_output_lists_functions_and_queues(shop, capsys: pytest.CaptureFixture[str]) -> None:
    from cli.commands.deploy import _print_summary
    from infra.always_on import always_on
    from infra.deploy import SynthResult

    _print_summary(SynthResult(shop.path, shop.path.parent, shop.built.plan, 1.5, ["a warning"],
                               always_on(shop.raw)))
    captured = capsys.readouterr()
    assert str(shop.path) in captured.out
    assert "always on (dev profile)" in captured.out and "interface VPC endpoint" in captured.out
    for name, spec in load_project(SHOP).functions.items():
        assert f"{spec.method} {spec.route}" in captured.out and name in captured.out
        if spec.is_async:
            assert f"queue {name}:" in captured.out
    assert "warning: a warning" in captured.err


def test_synth_of_a_broken_project_fails_with_the_manifest_problem(tmp_path: Path) -> None:
    (tmp_path / "flux.json").write_text('{"name": "x", "bogus": 1}')
    result = run_command("synth_cmd", str(tmp_path), "--out", str(tmp_path / "o"), env=no_aws_env())
    assert result.returncode == 1
    assert "bogus" in result.stderr and "unknown key" in result.stderr


def test_deploy_without_credentials_fails_fast_and_says_what_is_missing() -> None:
    started = time.monotonic()
    result = run_command("deploy_cmd", str(SHOP), env=no_aws_env())
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "no AWS credentials were found" in result.stderr
    assert "no AWS region is set" in result.stderr
    assert "AWS_PROFILE" in result.stderr and "AWS_REGION" in result.stderr
    assert "cdk.out" not in result.stdout  # it stopped before building or synthesizing anything
    assert elapsed < 20


def test_deploy_with_credentials_but_no_region_names_only_the_region() -> None:
    env = no_aws_env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    result = run_command("deploy_cmd", str(SHOP), env=env)
    assert result.returncode == 1
    assert "no AWS region is set" in result.stderr
    assert "credentials" not in result.stderr


def test_preflight_identity_and_bootstrap_against_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        identity = check_identity()
        assert identity.region == "eu-west-1" and identity.account.isdigit()
        assert check_bootstrap(identity) is False
        boto3.client("ssm", region_name="eu-west-1").put_parameter(
            Name="/cdk-bootstrap/hnb659fds/version", Value="27", Type="String")
        assert check_bootstrap(identity) is True


def test_preflight_reports_an_unknown_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "nope")
    with pytest.raises(PreflightFailed, match="profile 'nope' does not exist"):
        check_identity()


def test_cdk_cli_choice() -> None:
    assert cdk_command(lambda name: "/usr/local/bin/cdk" if name == "cdk" else None) == ["/usr/local/bin/cdk"]
    assert cdk_command(lambda name: "/usr/bin/npx" if name == "npx" else None) == ["/usr/bin/npx", "--yes",
                                                                                 "aws-cdk@2"]
    with pytest.raises(InfraError, match=r"Node\.js"):
        cdk_command(lambda name: None)


def test_deploy_runs_the_cdk_cli_on_the_synthesized_assembly_and_reads_the_outputs(shop, tmp_path: Path,
                                                                                     monkeypatch) -> None:
    from infra.deploy import SynthResult, deploy, endpoints

    monkeypatch.setattr("infra.deploy.cdk_command", lambda: ["cdk"])
    result = SynthResult(shop.path, tmp_path, shop.built.plan, 1.0)
    seen = {}

    def fake_cdk(command, env, check):
        seen.update(command=command, env=env)
        outputs = {result.plan.stack_name: {"ApiUrl": "https://abc.execute-api.eu-west-1.amazonaws.com",
                                            "DashboardUrl": "https://abc.execute-api.eu-west-1.amazonaws.com/_flux/"}}
        (tmp_path / "outputs.json").write_text(json.dumps(outputs))
        return subprocess.CompletedProcess(command, 0)

    outputs = deploy(result, region="eu-west-1", account="123456789012", runner=fake_cdk)
    command = seen["command"]
    assert command[:4] == ["cdk", "deploy", "--app", str(tmp_path)]
    assert result.plan.stack_name in command and "--outputs-file" in command
    assert seen["env"]["CDK_DEFAULT_REGION"] == "eu-west-1"
    assert outputs["ApiUrl"].startswith("https://")
    hello = dict(endpoints(result.plan, outputs["ApiUrl"]))["hello"]
    assert hello == "POST https://abc.execute-api.eu-west-1.amazonaws.com/hello"

    def failing_cdk(command, env, check):
        return subprocess.CompletedProcess(command, 2)

    with pytest.raises(InfraError, match="exit 2"):
        deploy(result, region="eu-west-1", account="123456789012", runner=failing_cdk)


def test_destroy_deletes_the_stack_and_reports_a_missing_one() -> None:
    from botocore.stub import Stubber

    from infra.deploy import destroy

    client = boto3.client("cloudformation", region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    gone = {"service_error_code": "ValidationError", "service_message": "Stack with id flux-shop-dev does not exist"}
    stack = {"StackName": "flux-shop-dev", "CreationTime": "2024-01-01T00:00:00Z", "StackStatus": "CREATE_COMPLETE"}

    class Session:
        def client(self, service, region_name, config=None):
            assert (service, region_name) == ("cloudformation", "us-east-1")
            return client

    with Stubber(client) as stub:
        stub.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": "flux-shop-dev"})
        stub.add_response("delete_stack", {}, {"StackName": "flux-shop-dev"})
        stub.add_client_error("describe_stacks", **gone)  # the waiter: the stack is gone
        assert destroy("flux-shop-dev", region="us-east-1", session_factory=Session) is True
        stub.add_client_error("describe_stacks", **gone)
        assert destroy("flux-shop-dev", region="us-east-1", session_factory=Session) is False
        stub.assert_no_pending_responses()


# -- issue #13: the account's concurrency must hold what the stack reserves -------------------------------------

def _lambda_settings(limit: int, unreserved: int):
    """A session whose Lambda client answers GetAccountSettings as AWS does (botocore's Stubber checks the
    request and the response against the service model)."""
    from botocore.stub import Stubber

    client = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="x",
                                   region_name="eu-west-1").client("lambda")
    stubber = Stubber(client)
    stubber.add_response("get_account_settings", {"AccountLimit": {
        "TotalCodeSize": 80530636800, "CodeSizeUnzipped": 262144000, "CodeSizeZipped": 52428800,
        "ConcurrentExecutions": limit, "UnreservedConcurrentExecutions": unreserved}, "AccountUsage": {
        "TotalCodeSize": 0, "FunctionCount": 0}}, {})
    stubber.activate()

    class Session:
        def client(self, service: str, region_name: str | None = None, config=None):
            assert (service, region_name) == ("lambda", "eu-west-1")
            return client

    return Session


def test_preflight_refuses_a_stack_the_account_concurrency_cannot_hold(shop) -> None:
    from infra.preflight import Identity, check_concurrency

    identity = Identity("123456789012", "arn:aws:iam::123456789012:user/me", "eu-west-1")
    reserving = shop.built.plan.reserved_concurrency
    with pytest.raises(PreflightFailed) as refused:  # a new account: a limit of 10, nothing reservable
        check_concurrency(identity, reserving, _lambda_settings(10, 10))
    ((what, todo),) = refused.value.problems
    assert f"reserves {reserving} concurrent Lambda executions" in what and "limit is 10" in what
    assert "at most 0 can be reserved" in what and "concurrency" in todo and "Service Quotas" in todo
    room = check_concurrency(identity, reserving, _lambda_settings(1000, 1000))
    assert room is not None and room.warnings() == []
    crowded = check_concurrency(identity, reserving, _lambda_settings(1000, 150))
    assert crowded is not None and "fewer than AWS's minimum of 100" in crowded.warnings()[0]


def test_preflight_concurrency_is_skipped_when_the_settings_cannot_be_read() -> None:
    from botocore.stub import Stubber

    from infra.preflight import Identity, check_concurrency

    client = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="x",
                                   region_name="eu-west-1").client("lambda")
    stubber = Stubber(client)
    stubber.add_client_error("get_account_settings", service_error_code="AccessDeniedException", http_status_code=403)
    stubber.activate()

    class Session:
        def client(self, service: str, region_name: str | None = None, config=None):
            return client

    assert check_concurrency(Identity("1", "arn", "eu-west-1"), 50, Session) is None
