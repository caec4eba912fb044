"""The runtime Lambda entry with real Deno, spans to DynamoDB (moto) and secrets from Secrets Manager (moto).

Also the database wiring of a runtime Lambda: the DSN is read on the first ``ctx.db`` call, so a function that
never queries works even when the database secret is unreadable, and a ``{"url": ...}`` secret (what the stack
stores for ``database.url``) is a working database.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from functions.aws import entry_http, runtime_state
from functions.observability.dynamo_schema import create_spans_table
from functions.observability.dynamo_store import DynamoSpanStore

pytestmark = pytest.mark.integration


def api_gateway_event(body: dict, *, request_id: str | None = None, route: str = "/greet") -> dict:
    """An HTTP API payload 2.0 event as API Gateway sends it for POST /greet (or another POST route)."""
    headers = {"accept": "*/*", "content-length": str(len(json.dumps(body))), "content-type": "application/json",
               "host": "abc123.execute-api.us-east-1.amazonaws.com", "user-agent": "curl/8.5.0",
               "x-amzn-trace-id": "Root=1-67891233-abcdef012345678912345678",
               "x-forwarded-for": "203.0.113.7", "x-forwarded-port": "443", "x-forwarded-proto": "https"}
    if request_id:
        headers["x-request-id"] = request_id
    return {
        "version": "2.0", "routeKey": f"POST {route}", "rawPath": route, "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": "POST", "path": route, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7",
                     "userAgent": "curl/8.5.0"},
            "requestId": "JKJaXmPLvHcESHA=", "routeKey": f"POST {route}", "stage": "$default",
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
    count = tmp_path / "functions" / "count"
    count.mkdir(parents=True)
    (count / "index.ts").write_text("""
        export default async function handler(input, ctx) {
          return { rows: await ctx.db.query({ table: "items", operation: "select", columns: ["name"] }) };
        }""")
    (count / "flux.json").write_text(json.dumps({"route": "/count", "auth": "api_key"}))
    refuse = tmp_path / "functions" / "refuse"
    refuse.mkdir(parents=True)
    (refuse / "index.ts").write_text("""
        export default async function handler(input, ctx) {
          const key = await ctx.secrets.get("GREETING_KEY");
          throw new Error(`smtp refused for ${input.to} with key ${key}`);
        }""")
    (refuse / "flux.json").write_text(json.dumps({"async": True}))
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
        runtime_state.reset()


def test_lambda_handler_serves_the_event_and_records_the_trace(aws_project):
    request_id = "c0ffee00c0ffee00c0ffee00c0ffee00"
    result = entry_http.handler(api_gateway_event({"name": "Ada"}, request_id=request_id), None)
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
    first = entry_http.handler(api_gateway_event({"name": "A"}), None)
    assert first["statusCode"] == 200
    pool = runtime_state.state("http").runtime.pool("greet")
    cold_starts = pool.cold_starts
    second = entry_http.handler(api_gateway_event({"name": "B"}), None)
    assert json.loads(second["body"])["greeting"] == "hi B"
    assert pool.cold_starts == cold_starts


def test_soft_denied_request_never_reaches_the_function(aws_project):
    event = api_gateway_event({"name": "Mallory"})
    event["requestContext"]["authorizer"]["lambda"] = {"outcome": "deny", "error": "unauthorized",
                                                       "message": "missing or invalid credentials",
                                                       "auth_type": "api_key"}
    result = entry_http.handler(event, None)
    assert result["statusCode"] == 401
    assert json.loads(result["body"])["error"] == "unauthorized"
    trace = aws_project.get_trace(result["headers"]["x-request-id"])
    assert [s.kind for s in trace] == ["gateway"]


def test_an_unreadable_database_secret_fails_only_the_queries(aws_project, monkeypatch):
    monkeypatch.setenv("DATABASE_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:gone-AbCdEf")
    greeted = entry_http.handler(api_gateway_event({"name": "Ada"}), None)
    assert greeted["statusCode"] == 200  # the cold start read no secret and opened no pool
    for _ in range(2):   # the second query fails fast from the remembered failure, the same way
        failed = entry_http.handler(api_gateway_event({}, route="/count"), None)
        assert failed["statusCode"] == 503
        body = json.loads(failed["body"])
        assert body["error"] == "database_unavailable"
        assert "cannot read the database secret (ResourceNotFoundException)" in body["message"]
        assert "gone-AbCdEf" not in failed["body"]
        assert failed["headers"]["retry-after"] == "5"
    assert entry_http.handler(api_gateway_event({"name": "Bo"}), None)["statusCode"] == 200


def test_a_url_secret_is_a_working_database(aws_project, monkeypatch, pg_dsn):
    import psycopg

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO items (name) VALUES ('apple'), ('pear')")
    arn = boto3.client("secretsmanager").create_secret(Name="flux/lam/prod/db", SecretString=json.dumps(
        {"url": pg_dsn}))["ARN"]
    monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
    result = entry_http.handler(api_gateway_event({}, route="/count"), None)
    assert result["statusCode"] == 200, result["body"]
    assert sorted(r["name"] for r in json.loads(result["body"])["rows"]) == ["apple", "pear"]


def test_a_failed_job_records_the_internal_error_not_the_public_placeholder(aws_project):
    """The DLQ's last error (an operator's view) is the thrown message, secrets redacted; HTTP callers in AWS
    only ever get the placeholder."""
    from functions.queue_consumer.runner import describe_error
    from functions.shared.context import CallContext
    from functions.shared.errors import FunctionError

    state = runtime_state.state("worker")
    call = CallContext("d" * 32, "e" * 16, "refuse", "d" * 32, state.sink)
    with pytest.raises(FunctionError) as caught:
        state.run(state.runtime.invoke("refuse", {"to": "ada@example.com"}, call))
    assert "see the trace" in caught.value.message   # what an HTTP caller would see
    recorded = describe_error(caught.value)
    assert recorded.startswith("function_error: Error: smtp refused for ada@example.com") or \
        recorded.startswith("function_error: smtp refused for ada@example.com"), recorded
    assert "k-123456" not in recorded
