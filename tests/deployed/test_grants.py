"""Least privilege on the emulated stack: what a function does not declare, it cannot reach.

Two walls, each checked here: the runtime refuses an undeclared secret, push or
invoke with a 403 naming the declaration (the same answer as under `flux dev`), and
the function's role, read from the deployed template with the emulated ARNs, has no
grant for the call (harness/iam.py evaluates it as IAM would: moto's server itself
does not enforce IAM, so the refusal a real account would add cannot be observed as
an AccessDenied here).
"""

from __future__ import annotations

import concurrent.futures
import json
import time

import pytest

from tests.deployed.harness.iam import RolePolicy

pytestmark = pytest.mark.xdist_group("deployed")

WEBHOOK_SECRET = "whsec-deployed-0123456789abcdef"


@pytest.fixture(scope="module")
def webhook_secret(cli, project, deployed) -> str:
    """The payment webhook's secret, stored as a user would, and its real ARN in the (emulated) account."""
    done = cli("secrets", "set", "PAYMENT_WEBHOOK_SECRET", "--stage", "dev", "-C", str(project),
               input=WEBHOOK_SECRET + "\n")
    assert done.returncode == 0, done.stderr
    return deployed.client("secretsmanager").describe_secret(SecretId="flux/shop/dev/PAYMENT_WEBHOOK_SECRET")["ARN"]


def standard_403(response, code: str) -> dict:
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error"] == code and body["request_id"] == response.headers["x-request-id"], body
    return body


def test_reading_an_undeclared_secret_fails_and_the_role_has_no_grant(api, deployed, webhook_secret):
    response = api.get("/overreach/secret")
    body = standard_403(response, "secret_not_declared")
    assert '"secrets": ["PAYMENT_WEBHOOK_SECRET"]' in body["message"]
    assert "functions/overreach/flux.json" in body["message"]
    assert WEBHOOK_SECRET not in response.text
    overreach = RolePolicy.of_function(deployed.stack, "overreach")
    assert not overreach.allows("secretsmanager:GetSecretValue", webhook_secret)
    assert RolePolicy.of_function(deployed.stack, "payment_webhook").allows("secretsmanager:GetSecretValue",
                                                                             webhook_secret)
    jwt = deployed.client("secretsmanager").describe_secret(SecretId="flux/shop/dev/JWT_SECRET")["ARN"]
    assert not overreach.allows("secretsmanager:GetSecretValue", jwt)  # the gateway's secret: no function's


def queue_arn(deployed, function: str) -> str:
    urls = json.loads(deployed.stack.outputs()["QueueUrls"])
    return deployed.client("sqs").get_queue_attributes(QueueUrl=urls[function],
                                                       AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def test_an_undeclared_push_fails_and_the_role_cannot_send(api, deployed):
    body = standard_403(api.get("/overreach/push"), "push_not_declared")
    assert body["message"] == 'overreach may not push to send_invoice: add "pushes": ["send_invoice"] to ' \
                              "functions/overreach/flux.json"
    invoices = queue_arn(deployed, "send_invoice")
    assert not RolePolicy.of_function(deployed.stack, "overreach").allows("sqs:SendMessage", invoices)
    create_order = RolePolicy.of_function(deployed.stack, "create_order")
    assert create_order.allows("sqs:SendMessage", invoices)
    assert not create_order.allows("sqs:SendMessage", queue_arn(deployed, "flaky_webhook"))
    hello = RolePolicy.of_function(deployed.stack, "hello")
    assert not any(hello.allows("sqs:SendMessage", queue_arn(deployed, name))
                   for name in json.loads(deployed.stack.outputs()["QueueUrls"]))


def test_an_undeclared_invoke_fails(api):
    body = standard_403(api.get("/overreach/invoke"), "invoke_not_declared")
    assert '"invokes": ["hello"]' in body["message"]


def test_a_lambda_knows_only_the_queues_it_may_send_to(deployed):
    def variables(function: str) -> dict:
        for resource in deployed.stack.of_type("AWS::Lambda::Function").values():
            env = resource["Properties"].get("Environment", {}).get("Variables", {})
            if env.get("FLUX_FUNCTION") == function and resource["Properties"]["Handler"].endswith("entry_http.handler"):
                return deployed.stack.resolve(env)
        raise KeyError(function)

    assert "FLUX_QUEUE_URLS" not in variables("overreach") and "FLUX_QUEUE_URLS" not in variables("hello")
    assert set(json.loads(variables("create_order")["FLUX_QUEUE_URLS"])) == {"send_invoice"}


def test_unauthenticated_default_route_is_throttled_below_the_stage(api, deployed):
    """$default (Flux's 404 body) has its own route throttle, far below the stage's: a flood of unknown paths gets
    API Gateway's 429 while the function routes keep answering. Four callers at a time stay under the
    observability Lambda's reserved concurrency, so every 429 here is the route throttle's."""
    (stage,) = deployed.stack.of_type("AWS::ApiGatewayV2::Stage").values()
    limits = stage["Properties"]["RouteSettings"]["$default"]
    rate, burst = limits["ThrottlingRateLimit"], limits["ThrottlingBurstLimit"]
    assert rate < stage["Properties"]["DefaultRouteSettings"]["ThrottlingRateLimit"]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(lambda i: api.get(f"/no-such-path-{i}").status_code, range(8 * burst)))
    elapsed = time.monotonic() - started
    assert set(statuses) == {404, 429}, statuses
    assert statuses.count(404) <= burst + rate * elapsed + 4, (statuses.count(404), elapsed)
    assert api.post("/hello", json={"name": "still here"}).status_code == 200
    time.sleep(burst / rate)  # refill the bucket for whatever runs next
