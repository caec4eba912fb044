"""The Lambda entry point with AWS-shaped dependencies (moto): DynamoDB keys and limits, Secrets Manager."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest

from functions.aws import entry_authorizer as entry
from functions.gateway.keys_dynamodb import DynamoApiKeyStore

SECRET = "y" * 64


@pytest.fixture
def lambda_env(dynamodb: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(Name="flux/shop/JWT_SECRET",
                                                                          SecretString=SECRET)
    env = {"FLUX_PROJECT_DIR": str(project_dir), "KEYS_TABLE": "flux-keys", "RATE_LIMIT_TABLE": "flux-ratelimit"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    entry.reset()
    yield env
    entry.reset()


def test_handler_authorizes_with_dynamodb_keys_and_limits(lambda_env: dict[str, str], dynamodb: Any,
                                                          event: Any) -> None:
    _, key = DynamoApiKeyStore("flux-keys", dynamodb).create("ci")
    sample = event("gateway_authorizer_api_key.json")
    sample["headers"]["x-api-key"] = key
    contexts = [entry.handler(sample, None)["context"] for _ in range(21)]
    assert contexts[0]["outcome"] == "allow" and contexts[0]["key_name"] == "ci"
    assert [c["outcome"] for c in contexts].count("allow") == 20
    assert contexts[-1]["error"] == "rate_limited"
    bucket = dynamodb.get_item(TableName="flux-ratelimit", Key={"pk": {"S": "create_order|key:ci"}})
    assert "Item" in bucket
    record = dynamodb.get_item(TableName="flux-keys", Key={"pk": {"S": "name#ci"}})["Item"]
    assert key not in repr(record)


def test_handler_verifies_hs256_with_the_secrets_manager_secret(lambda_env: dict[str, str], event: Any) -> None:
    sample = event("gateway_authorizer_bearer_jwt.json")
    good = jwt.encode({"sub": "u1", "iss": "https://issuer.example", "exp": int(time.time()) + 60}, SECRET,
                      algorithm="HS256")
    sample["headers"]["authorization"] = f"Bearer {good}"
    context = entry.handler(sample, None)["context"]
    assert (context["outcome"], context["subject"]) == ("allow", "u1")
    forged = jwt.encode({"sub": "u1", "iss": "https://issuer.example", "exp": int(time.time()) + 60}, "z" * 64,
                        algorithm="HS256")
    sample["headers"]["authorization"] = f"Bearer {forged}"
    assert entry.handler(sample, None)["context"]["error"] == "unauthorized"


def test_handler_fails_closed_when_it_cannot_start(lambda_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                                   event: Any, tmp_path: Path) -> None:
    monkeypatch.setenv("FLUX_PROJECT_DIR", str(tmp_path / "not-a-project"))
    refused = entry.handler(event("gateway_authorizer_anonymous.json"), None)
    assert refused["isAuthorized"] is True  # a soft deny: API Gateway's bare 403 would carry no Flux body
    assert (refused["context"]["outcome"], refused["context"]["error"]) == ("deny", "auth_unavailable")
    monkeypatch.setenv("FLUX_PROJECT_DIR", lambda_env["FLUX_PROJECT_DIR"])
    assert entry.handler(event("gateway_authorizer_anonymous.json"), None)["isAuthorized"] is True  # retried


def test_handler_fails_closed_when_the_key_table_is_missing(lambda_env: dict[str, str],
                                                            monkeypatch: pytest.MonkeyPatch, event: Any) -> None:
    monkeypatch.setenv("KEYS_TABLE", "gone")
    context = entry.handler(event("gateway_authorizer_api_key.json"), None)["context"]
    assert (context["outcome"], context["error"]) == ("deny", "auth_unavailable")


def test_handler_fails_open_when_the_rate_limit_table_is_missing(lambda_env: dict[str, str],
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 event: Any) -> None:
    monkeypatch.setenv("RATE_LIMIT_TABLE", "gone")
    context = entry.handler(event("gateway_authorizer_anonymous.json"), None)["context"]
    assert (context["outcome"], context["ratelimit_outcome"]) == ("allow", "store_error")
