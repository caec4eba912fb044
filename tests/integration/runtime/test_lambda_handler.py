"""The runtime Lambda entry with real Deno, spans to DynamoDB (moto) and secrets from Secrets Manager (moto)."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from functions.observability.dynamo_schema import create_spans_table
from functions.observability.dynamo_store import DynamoSpanStore
from functions.runtime import lambda_handler, lambda_runtime

pytestmark = pytest.mark.integration


def api_gateway_event(body: dict, *, request_id: str | None = None) -> dict:
    """An HTTP API payload 2.0 event as API Gateway sends it for POST /greet."""
    headers = {"accept": "*/*", "content-length": str(len(json.dumps(body))), "content-type": "application/json",
               "host": "abc123.execute-api.us-east-1.amazonaws.com", "user-agent": "curl/8.5.0",
               "x-amzn-trace-id": "Root=1-67891233-abcdef012345678912345678",
               "x-forwarded-for": "203.0.113.7", "x-forwarded-port": "443", "x-forwarded-proto": "https"}
    if request_id:
        headers["x-request-id"] = request_id
    return {
        "version": "2.0", "routeKey": "POST /greet", "rawPath": "/greet", "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": "POST", "path": "/greet", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7",
                     "userAgent": "curl/8.5.0"},
            "requestId": "JKJaXmPLvHcESHA=", "routeKey": "POST /greet", "stage": "$default",
            "time": "24/Nov/2026:10:00:00 +0000", "timeEpoch": 1795514400000,
            "authorizer": {"lambda": {"outcome": "allow", "auth_type": "api_key", "key_name": "ci", "scope": "invoke",
                                      "ratelimit_outcome": "allowed", "ratelimit_limit": 100,
                                      "ratelimit_remaining": 99, "ratelimit_reset": 60}},
        },
        "body": json.dumps(body), "isBase64Encoded": False,
    }


@pytest.fixture
def aws_project(tmp_path: Path, monkeypatch):
    (tmp_path / "flux.json").write_text(json.dumps({"name": "lam", "secrets": ["GREETING_KEY"]}))
    fn = tmp_path / "functions" / "greet"
    fn.mkdir(parents=True)
    (fn / "index.ts").write_text("""
        export default async function handler(input, ctx) {
          const key = await ctx.secrets.get("GREETING_KEY");
          ctx.log.info("greeting", { who: input.name });
          return { greeting: `hi ${input.name}`, keyLength: key.length, auth: ctx.auth };
        }""")
    (fn / "flux.json").write_text(json.dumps({"route": "/greet", "auth": "api_key"}))
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "FLUX_PROJECT_DIR": str(tmp_path), "FLUX_FUNCTION": "greet", "SPANS_TABLE": "spans",
           "FLUX_SECRETS_PREFIX": "flux/lam/prod/", "FLUX_STATE_DIR": str(tmp_path / "state")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        create_spans_table(dynamodb, "spans")
        boto3.client("secretsmanager").create_secret(Name="flux/lam/prod/GREETING_KEY", SecretString="k-123456")
        yield DynamoSpanStore(dynamodb, "spans")
        lambda_runtime.reset()


def test_lambda_handler_serves_the_event_and_records_the_trace(aws_project):
    request_id = "c0ffee00c0ffee00c0ffee00c0ffee00"
    result = lambda_handler.handler(api_gateway_event({"name": "Ada"}, request_id=request_id), None)
    assert result["statusCode"] == 200
    assert result["headers"]["x-request-id"] != request_id  # the caller's id is kept for correlation only
    trace_id = result["headers"]["x-request-id"]
    assert result["headers"]["ratelimit-remaining"] == "99"
    body = json.loads(result["body"])
    assert body == {"greeting": "hi Ada", "keyLength": 8,
                    "auth": {"type": "api_key", "key_name": "ci", "scope": "invoke"}}
    spans = aws_project.get_trace(trace_id)
    kinds = {s.kind: s for s in spans}
    assert kinds["gateway"].attrs["correlation.request_id"] == request_id
    assert set(kinds) == {"gateway", "function"}
    assert kinds["function"].parent_span_id == kinds["gateway"].span_id
    assert kinds["gateway"].attrs["auth.key_name"] == "ci"
    logs = aws_project.list_logs(request_id=trace_id)
    assert [log.message for log in logs] == ["greeting"]
    assert "k-123456" not in json.dumps([s.to_dict() for s in spans])


def test_lambda_handler_is_warm_on_the_second_event(aws_project):
    first = lambda_handler.handler(api_gateway_event({"name": "A"}), None)
    assert first["statusCode"] == 200
    pool = lambda_runtime.get_invoker().pool("greet")
    cold_starts = pool.cold_starts
    second = lambda_handler.handler(api_gateway_event({"name": "B"}), None)
    assert json.loads(second["body"])["greeting"] == "hi B"
    assert pool.cold_starts == cold_starts


def test_soft_denied_request_never_reaches_the_function(aws_project):
    event = api_gateway_event({"name": "Mallory"})
    event["requestContext"]["authorizer"]["lambda"] = {"outcome": "deny", "error": "unauthorized",
                                                       "message": "missing or invalid credentials",
                                                       "auth_type": "api_key"}
    result = lambda_handler.handler(event, None)
    assert result["statusCode"] == 401
    assert json.loads(result["body"])["error"] == "unauthorized"
    trace = aws_project.get_trace(result["headers"]["x-request-id"])
    assert [s.kind for s in trace] == ["gateway"]
