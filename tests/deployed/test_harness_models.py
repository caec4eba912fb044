"""The emulation itself, checked against AWS's published sample events (tests/events/aws_*_docs_*.json).

A harness that builds events AWS would never send tests nothing, so its pure parts are
held to the documented shapes here: no product code is involved.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from tests.deployed.harness import apigw_event as ev
from tests.deployed.harness.apigw_http import Route
from tests.deployed.harness.sqs_esm import record

EVENTS = Path(__file__).resolve().parents[1] / "events"


def sample(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def docs_request() -> ev.HttpRequest:
    return ev.HttpRequest("POST", "/my/path", "parameter1=value1&parameter1=value2&parameter2=value",
                          [("Header1", "value1"), ("header2", "value1"), ("Header2", "value2"),
                           ("Cookie", "cookie1; cookie2"), ("User-Agent", "agent"),
                           ("Content-Type", "text/plain")], b"Hello from Lambda", source_ip="192.0.2.1")


def built(authorizer: bool) -> tuple[dict, dict]:
    request = docs_request()
    match = ev.RouteMatch("$default", {"parameter1": "value1"})
    context = ev.request_context(request, match, api_id="api-id", account="123456789012",
                                 host="id.execute-api.us-east-1.amazonaws.com", req_id="id", now=1583348638.390)
    if authorizer:
        event = ev.authorizer_event(request, match, context, api_port=443, trace_id="Root=1-0-0",
                                    route_arn="arn:aws:execute-api:us-east-1:123456789012:abcdef123/test/GET/request",
                                    identity=["user1", "123"])
        return event, sample("aws_http_api_v2_docs_authorizer.json")
    event = ev.integration_event(request, match, context, api_port=443, trace_id="Root=1-0-0",
                                 authorizer_context={"exampleKey": "exampleValue"})
    return event, sample("aws_http_api_v2_docs_request.json")


def test_integration_event_has_the_documented_shape():
    event, docs = built(authorizer=False)
    assert set(event) == set(docs)
    assert set(event["requestContext"]) == set(docs["requestContext"])
    for key in ("version", "routeKey", "rawPath", "rawQueryString", "cookies", "queryStringParameters", "body",
                "pathParameters", "isBase64Encoded"):
        assert event[key] == docs[key], key
    assert event["headers"]["header1"] == "value1" and event["headers"]["header2"] == "value1,value2"
    assert "cookie" not in event["headers"]
    assert {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-port", "x-amzn-trace-id"} <= set(event["headers"])
    assert event["requestContext"]["http"] == docs["requestContext"]["http"]
    # AWS's own sample disagrees with itself (its timeEpoch is 4 March); the format is what must match.
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000", event["requestContext"]["time"])
    assert event["requestContext"]["timeEpoch"] == docs["requestContext"]["timeEpoch"]
    assert event["requestContext"]["authorizer"] == docs["requestContext"]["authorizer"]


def test_authorizer_event_has_the_documented_shape():
    event, docs = built(authorizer=True)
    assert set(event) == set(docs)
    assert "body" not in event and "authorizer" not in event["requestContext"]
    assert event["identitySource"] == docs["identitySource"]
    assert event["type"] == "REQUEST" and event["routeArn"] == docs["routeArn"]


def test_binary_body_is_base64_and_empty_parts_are_left_out():
    request = ev.HttpRequest("GET", "/x", "", [("content-type", "application/octet-stream")], b"\x00\xff")
    match = ev.RouteMatch("GET /x", {})
    context = ev.request_context(request, match, api_id="a", account="1", host="h", req_id="r", now=0)
    event = ev.integration_event(request, match, context, api_port=1, trace_id="t", authorizer_context=None)
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\x00\xff"
    assert not {"cookies", "queryStringParameters", "pathParameters"} & set(event)
    assert "authorizer" not in event["requestContext"]


def test_response_mapping_structured_inferred_and_broken():
    structured = ev.map_response(json.dumps({"statusCode": 201, "headers": {"x-a": "1"}, "cookies": ["a=1", "b=2"],
                                             "body": base64.b64encode(b"\x01\x02").decode(),
                                             "isBase64Encoded": True}).encode())
    assert structured.status == 201 and structured.body == b"\x01\x02"
    assert [v for k, v in structured.headers if k == "set-cookie"] == ["a=1", "b=2"]
    inferred = ev.map_response(b'{"hello": "world"}')
    assert inferred.status == 200 and ("content-type", "application/json") in inferred.headers
    assert json.loads(inferred.body) == {"hello": "world"}
    for broken in (b"not json", b'{"statusCode": "200"}', b'{"statusCode": 200, "body": "!!", "isBase64Encoded": true}'):
        response = ev.map_response(broken)
        assert response.status == 500 and json.loads(response.body) == {"message": "Internal Server Error"}


def route(key: str) -> Route:
    method, path = ("", "") if key == "$default" else key.split(" ", 1)
    return Route(key, method, tuple(s for s in path.strip("/").split("/") if s), "f", 30000, None)


def test_most_specific_route_wins():
    routes = [route(k) for k in ("GET /orders", "GET /orders/{id}", "ANY /orders/{id}", "GET /_flux/{proxy+}",
                                 "GET /orders/special", "$default")]

    def best(method: str, path: str) -> tuple[str, dict]:
        found = [(r, p) for r in routes if (p := r.match(method, path)) is not None]
        chosen, params = max(found, key=lambda rp: rp[0].rank())
        return chosen.key, params

    assert best("GET", "/orders") == ("GET /orders", {})
    assert best("GET", "/orders/special") == ("GET /orders/special", {})
    assert best("GET", "/orders/42") == ("GET /orders/{id}", {"id": "42"})
    assert best("DELETE", "/orders/42") == ("ANY /orders/{id}", {"id": "42"})
    assert best("GET", "/_flux/api/traces/x") == ("GET /_flux/{proxy+}", {"proxy": "api/traces/x"})
    assert best("GET", "/_flux") == ("$default", {})
    assert best("POST", "/orders") == ("$default", {})


def test_sqs_record_has_the_documented_shape():
    docs = sample("aws_sqs_docs_record.json")["Records"][0]
    message = {"MessageId": docs["messageId"], "ReceiptHandle": docs["receiptHandle"], "Body": docs["body"],
               "Attributes": docs["attributes"], "MD5OfBody": docs["md5OfBody"]}
    built_record = record(message, queue_arn=docs["eventSourceARN"], region="us-east-1")
    assert built_record == docs


class StubLambdas:
    """Stands in for the Lambda service so the API front's own rules can be checked alone."""

    def __init__(self, answers: dict) -> None:
        self.answers, self.calls = answers, []

    def invoke(self, name: str, payload: bytes):
        import time as _time

        from tests.deployed.harness.lambda_service import InvokeResult

        self.calls.append((name, json.loads(payload)))
        answer = self.answers[name]
        if callable(answer):
            answer = answer(json.loads(payload))
        if isinstance(answer, float):
            _time.sleep(answer)
            return InvokeResult(b'{"late": true}')
        if answer == "error":
            return InvokeResult(b'{"errorMessage": "boom"}', "Unhandled")
        return InvokeResult(json.dumps(answer).encode())


def front(answers: dict, *, ttl: int = 300, identity: tuple[str, ...] = ("$request.header.x-api-key",),
          timeout_ms: int = 30000):
    from tests.deployed.harness.apigw_http import Authorizer, HttpApi, HttpApiModel

    authorizer = Authorizer("Auth", "authorizer", identity, ttl, True)
    routes = [Route("GET /items/{id}", "GET", ("items", "{id}"), "items", timeout_ms, authorizer),
              Route("GET /slow", "GET", ("slow",), "slow", timeout_ms, None),
              Route("GET /broken", "GET", ("broken",), "broken", timeout_ms, None)]
    cors = {"AllowOrigins": ["http://app.example"], "AllowMethods": ["GET"], "AllowHeaders": ["x-api-key"],
            "ExposeHeaders": ["x-request-id"], "MaxAge": 60}
    lambdas = StubLambdas(answers)
    api = HttpApi(HttpApiModel("api", routes, cors, None, None), lambdas, account="123456789012", region="us-east-1")
    return api, lambdas


def get(api, path: str, headers: list[tuple[str, str]] | None = None, method: str = "GET"):
    return api.handle(ev.HttpRequest(method, path, "", headers or [], b""))


def test_authorizer_identity_sources_cache_and_denials():
    decide = {"authorizer": lambda e: {"isAuthorized": e["headers"].get("x-api-key") == "good",
                                       "context": {"who": e["identitySource"][0]}},
              "items": {"ok": True}}
    api, lambdas = front(decide)
    try:
        missing = get(api, "/items/1")
        assert missing.status == 401 and json.loads(missing.body) == {"message": "Unauthorized"}
        assert lambdas.calls == []  # not invoked without its identity source
        assert get(api, "/items/1", [("x-api-key", "good")]).status == 200
        assert get(api, "/items/2", [("x-api-key", "good")]).status == 200
        assert [c[0] for c in lambdas.calls].count("authorizer") == 1  # cached per identity-source values
        integration = next(c[1] for c in lambdas.calls if c[0] == "items")
        assert integration["requestContext"]["authorizer"] == {"lambda": {"who": "good"}}
        assert integration["pathParameters"] == {"id": "1"}
        denied = get(api, "/items/1", [("x-api-key", "bad")])
        assert denied.status == 403 and json.loads(denied.body) == {"message": "Forbidden"}
    finally:
        api.close()


def test_uncached_authorizer_without_identity_sources_runs_every_time():
    api, lambdas = front({"authorizer": {"isAuthorized": True, "context": {}}, "items": {}}, ttl=0, identity=())
    try:
        for _ in range(3):
            assert get(api, "/items/1").status == 200
        assert [c[0] for c in lambdas.calls].count("authorizer") == 3
    finally:
        api.close()


def test_integration_timeout_function_error_and_unknown_route():
    api, _ = front({"slow": 0.5, "broken": "error"}, timeout_ms=100)
    try:
        slow = get(api, "/slow")
        assert slow.status == 503 and json.loads(slow.body) == {"message": "Service Unavailable"}
        broken = get(api, "/broken")
        assert broken.status == 500 and json.loads(broken.body) == {"message": "Internal Server Error"}
        assert get(api, "/nothing").status == 404
    finally:
        api.close()


def test_cors_preflight_and_exposed_headers():
    api, lambdas = front({"slow": {"ok": 1}})
    try:
        preflight = get(api, "/slow", [("origin", "http://app.example"), ("access-control-request-method", "GET")],
                        method="OPTIONS")
        assert preflight.status == 204 and lambdas.calls == []
        headers = dict(preflight.headers)
        assert headers["access-control-allow-origin"] == "http://app.example"
        assert headers["access-control-max-age"] == "60"
        plain = dict(get(api, "/slow", [("origin", "http://app.example")]).headers)
        assert plain["access-control-allow-origin"] == "http://app.example"
        assert plain["access-control-expose-headers"] == "x-request-id"
        other = dict(get(api, "/slow", [("origin", "http://evil.example")]).headers)
        assert "access-control-allow-origin" not in other
    finally:
        api.close()


def test_route_settings_throttle_their_route_instead_of_the_stage():
    """API Gateway: a RouteSettings entry's limits replace the stage default for that route only."""
    from tests.deployed.harness.apigw_http import HttpApi, HttpApiModel

    routes = [Route("GET /slow", "GET", ("slow",), "slow", 30000, None),
              Route("GET /broken", "GET", ("broken",), "broken", 30000, None)]
    model = HttpApiModel("api", routes, None, 1000.0, 1000, route_limits={"GET /slow": (0.001, 2)})
    api = HttpApi(model, StubLambdas({"slow": {"ok": True}, "broken": {"ok": True}}), account="123456789012",
                  region="us-east-1")
    try:
        assert [get(api, "/slow").status for _ in range(3)] == [200, 200, 429]
        assert json.loads(get(api, "/slow").body) == {"message": "Too Many Requests"}
        assert [get(api, "/broken").status for _ in range(5)] == [200] * 5  # the stage default still applies here
    finally:
        api.close()


def test_role_policy_evaluation_matches_iam_wildcards_and_denies():
    from pathlib import Path

    from tests.deployed.harness.iam import RolePolicy
    from tests.deployed.harness.template import Stack

    secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:flux/p/dev/KEY-??????"
    template = {"Resources": {
        "Role": {"Type": "AWS::IAM::Role", "Properties": {}},
        "Policy": {"Type": "AWS::IAM::Policy", "Properties": {"Roles": [{"Ref": "Role"}], "PolicyDocument": {
            "Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secret},
                          {"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": "arn:aws:sqs:*:*:q-*"},
                          {"Effect": "Deny", "Action": "sqs:*", "Resource": "arn:aws:sqs:*:*:q-secret"}]}}}}}
    policy = RolePolicy.of_role(Stack(template, "s", Path(".")), "Role")
    assert policy.allows("secretsmanager:GetSecretValue", secret.replace("??????", "AbC123"))
    assert not policy.allows("secretsmanager:GetSecretValue", secret.replace("??????", "AbC1234"))  # longer name
    assert not policy.allows("secretsmanager:GetSecretValue", secret.replace("KEY", "OTHER").replace("??????", "x" * 6))
    assert policy.allows("SQS:SendMessage", "arn:aws:sqs:us-east-1:1:q-jobs")  # actions are case-insensitive
    assert not policy.allows("sqs:SendMessage", "arn:aws:sqs:us-east-1:1:q-secret")  # an explicit deny wins
    assert not policy.allows("sqs:DeleteMessage", "arn:aws:sqs:us-east-1:1:q-jobs")
