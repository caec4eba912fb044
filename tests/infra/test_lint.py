"""Linters on the synthesized templates: cfn-lint and cdk-nag (AwsSolutions), and checkov."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from cdk_nag import AwsSolutionsChecks

from tests.infra.conftest import REPO, Synthesized, synthesize

# checkov lives in its own venv (make setup: requirements-checkov.lock), so it cannot move the main pins.
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"


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


def checkov(template: Path) -> dict:
    assert CHECKOV.exists(), f"{CHECKOV} is missing: run `make setup` (it installs requirements-checkov.lock)"
    done = subprocess.run([str(CHECKOV), "-f", str(template), "--framework", "cloudformation", "--skip-download",
                           "--compact", "-o", "json"], capture_output=True, text=True, check=False,
                          timeout=300)
    assert done.stdout.strip(), done.stderr[-3000:]
    report = json.loads(done.stdout)
    return report[0] if isinstance(report, list) else report


@pytest.mark.parametrize("which", ["shop", "shop_prod"])
def test_checkov_finds_nothing_that_is_not_skipped_with_a_reason(which: str, request) -> None:
    """Offline (``--skip-download``); every skip is metadata on its resource, written by infra/checkov.py."""
    synth: Synthesized = request.getfixturevalue(which)
    report = checkov(synth.path)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == [], failed
    assert report["summary"]["passed"] > 400 and report["summary"]["parsing_errors"] == 0
    skipped = report["results"]["skipped_checks"]
    short = [c["check_id"] for c in skipped if len(c["check_result"].get("suppress_comment") or "") < 60]
    assert skipped and short == [], short


def test_checkov_is_not_a_formality(shop: Synthesized, tmp_path: Path) -> None:
    """Without the skips (the metadata removed), the same template fails: the run above really checks."""
    raw = json.loads(synth_path_text(shop))
    for resource in raw["Resources"].values():
        resource.get("Metadata", {}).pop("checkov", None)
    bare = tmp_path / "bare.template.json"
    bare.write_text(json.dumps(raw))
    failed = {c["check_id"] for c in checkov(bare)["results"]["failed_checks"]}
    assert {"CKV_AWS_116", "CKV_AWS_158"} <= failed, failed


def synth_path_text(synth: Synthesized) -> str:
    return synth.path.read_text(encoding="utf-8")
