"""AWS's own linters on the synthesized templates: cfn-lint and cdk-nag (AwsSolutions)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from cdk_nag import AwsSolutionsChecks

from tests.infra.conftest import Synthesized, synthesize


@pytest.mark.parametrize("which", ["shop", "full"])
def test_cfn_lint_passes(which: str, request) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    cfn_lint = Path(sys.executable).with_name("cfn-lint")  # the venv's, next to its python
    result = subprocess.run([str(cfn_lint), str(synth.path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("which", ["shop", "full"])
def test_cdk_nag_reports_no_unacknowledged_finding(which: str, request) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    report = AwsSolutionsChecks(synth.built.app).validate_scope(synth.built.stack)
    assert report.success, [v.rule_name for v in report.violations]


@pytest.mark.parametrize("which", ["shop", "full"])
def test_every_acknowledgement_carries_a_reason(which: str, request) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    key = cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    acknowledged = {}
    for construct in synth.built.stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == key:
                acknowledged.update({f"{construct.node.path} {rule}": reason for rule, reason in entry.data.items()})
    assert acknowledged
    short = {rule: reason for rule, reason in acknowledged.items() if len(reason) < 60}
    assert not short, short


def test_cdk_nag_catches_a_wildcard_grant(full_project, placeholder_cache, tmp_path) -> None:
    """The nag run is not a formality: an unacknowledged broad grant fails validation (and so the synth)."""
    synth = synthesize(full_project, tmp_path / "out", placeholder_cache)
    stack = synth.built.stack
    iam.Grant.add_to_principal(grantee=stack.authorizer.lambda_.role, actions=["dynamodb:*"], resource_arns=["*"])
    report = AwsSolutionsChecks(synth.built.app).validate_scope(stack)
    assert not report.success
    assert any(v.rule_name.startswith("AwsSolutions-IAM5") for v in report.violations)
