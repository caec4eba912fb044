"""Every boto3 client Flux creates goes through functions/shared/aws_clients.py (short timeouts, bounded retries).

botocore's defaults (60 s connect, legacy retries) would let a cold start hang on an
unreachable endpoint until the Lambda's timeout; one bypass is enough for that, so the
source tree is scanned for any ``boto3.client(...)``/``<session>.client(...)`` made elsewhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from functions.shared import aws_clients

REPO = Path(__file__).resolve().parents[3]
SCANNED = ("functions", "cli", "infra")
HOME = Path("functions/shared/aws_clients.py")


def _aliases(tree: ast.AST) -> set[str]:
    """Local names bound to the aws_clients module (``from functions.shared import aws_clients as clients``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "functions.shared":
            names |= {a.asname or a.name for a in node.names if a.name == "aws_clients"}
        elif isinstance(node, ast.Import):
            names |= {a.asname for a in node.names if a.name == "functions.shared.aws_clients" and a.asname}
    return names


def bypasses(source: str) -> list[int]:
    """Lines that create a boto3 client or resource other than through aws_clients."""
    tree = ast.parse(source)
    allowed = _aliases(tree)
    lines = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("client", "resource")):
            continue
        receiver = node.func.value
        if isinstance(receiver, ast.Name) and receiver.id in allowed:
            continue
        lines.append(node.lineno)
    return lines


def test_no_module_creates_a_boto3_client_around_aws_clients() -> None:
    found = {}
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*.py")):
            relative = path.relative_to(REPO)
            if relative == HOME:
                continue
            lines = bypasses(path.read_text(encoding="utf-8"))
            if lines:
                found[str(relative)] = lines
    assert found == {}, f"boto3 clients made without functions/shared/aws_clients.py: {found}"


@pytest.mark.parametrize("source", [
    "import boto3\nboto3.client('sqs')\n",
    "import boto3\nboto3.session.Session().client('sts', region_name='x')\n",
    "def f(session_factory):\n    return session_factory().client('ssm')\n",
    "import boto3\nboto3.resource('dynamodb')\n",
])
def test_the_scan_catches_a_bypass(source: str) -> None:
    assert bypasses(source) == [source.rstrip("\n").count("\n") + 1]  # the call is on the last line


def test_the_module_alias_is_allowed() -> None:
    assert bypasses("from functions.shared import aws_clients as clients\nclients.client('dynamodb')\n") == []


def test_clients_fail_fast_and_retry_a_bounded_number_of_times() -> None:
    made = aws_clients.client("sqs", region="us-east-1")
    config = made.meta.config
    assert config.connect_timeout == aws_clients.CONNECT_TIMEOUT_S <= 3
    assert config.read_timeout == aws_clients.READ_TIMEOUT_S <= 10
    # botocore counts the first call too: max_attempts retries → max_attempts + 1 calls in all
    assert config.retries == {"total_max_attempts": aws_clients.MAX_ATTEMPTS + 1, "mode": "standard"}


def test_a_session_client_gets_the_same_config() -> None:
    import boto3

    session = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="eu-west-1")
    config = aws_clients.session_client(session, "sts", region="eu-west-1").meta.config
    assert (config.connect_timeout, config.read_timeout) == (aws_clients.CONNECT_TIMEOUT_S, aws_clients.READ_TIMEOUT_S)
    assert config.retries["total_max_attempts"] == aws_clients.MAX_ATTEMPTS + 1
