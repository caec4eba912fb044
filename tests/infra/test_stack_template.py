"""The synthesized template: routes, authorizers, queues, tables, functions, outputs."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match

from functions.aws import names
from functions.observability import dynamo_schema as span_schema
from functions.shared.manifest import load_project
from tests.infra.conftest import SHOP, Synthesized


def routes(synth: Synthesized) -> dict[str, dict]:
    return {r["Properties"]["RouteKey"]: r["Properties"] for r in synth.resources("AWS::ApiGatewayV2::Route").values()}


def authorizer_of(synth: Synthesized, route: dict) -> dict | None:
    ref = route.get("AuthorizerId", {}).get("Ref")
    return synth.raw["Resources"][ref]["Properties"] if ref else None


def logical_id(synth: Synthesized, construct) -> str:
    return synth.built.stack.resolve(construct.node.default_child.logical_id)


def lambda_env(synth: Synthesized, function: str, suffix: str = "") -> dict:
    runtime = synth.built.stack.runtime
    made = runtime.workers[function] if suffix == "-worker" else runtime.http[function]
    return synth.raw["Resources"][logical_id(synth, made.function)]["Properties"]


def test_examples_shop_has_one_route_per_function_with_its_method_and_path(shop: Synthesized) -> None:
    project = load_project(SHOP)
    found = routes(shop)
    for spec in project.functions.values():
        key = f"{spec.method} {spec.route}"
        assert key in found, f"{spec.name}: no route {key}"
        target = found[key]["Target"]["Fn::Join"][1][1]["Ref"]
        integration = shop.raw["Resources"][target]["Properties"]
        assert integration["PayloadFormatVersion"] == "2.0"
    function_routes = {k for k in found if not k.startswith(("GET /_flux", "$default"))}
    assert len(function_routes) == len(project.functions)


def test_an_internal_function_has_a_lambda_but_no_route(full: Synthesized) -> None:
    """Issue #14 (12): ``"internal": true`` functions are reached by ctx.function.invoke and the queue only."""
    assert not [key for key in routes(full) if key.endswith(" /audit_trail")]
    handlers = [r for r in full.raw["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
                and r["Properties"].get("Environment", {}).get("Variables", {}).get("FLUX_FUNCTION") == "audit_trail"]
    assert len(handlers) == 1


def test_examples_shop_authorizer_guards_exactly_the_routes_that_need_it(shop: Synthesized) -> None:
    project = load_project(SHOP)
    found = routes(shop)
    for spec in project.functions.values():
        route = found[f"{spec.method} {spec.route}"]
        needs = spec.auth != "none" or spec.rate_limit is not None
        assert (route["AuthorizationType"] == "CUSTOM") is needs, spec.name
    for key in ("GET /_flux", "GET /_flux/{proxy+}", "$default"):
        assert found[key]["AuthorizationType"] == "NONE"


def test_one_uncached_authorizer_without_identity_sources(full: Synthesized) -> None:
    # Caching would need identity sources, and API Gateway answers a request missing one with a bare 401
    # (no x-request-id), an identity source list needs *all* its headers (x-api-key or Authorization: Bearer
    # cannot both work), and a cached allow outlives a revoked key.
    found = routes(full)
    assert found["POST /hello"]["AuthorizationType"] == "NONE"
    assert found["GET /orders"]["AuthorizationType"] == "NONE"
    guarded = [authorizer_of(full, found[key]) for key in ("POST /orders", "GET /orders/{id}", "GET /reports/daily")]
    assert all(props == guarded[0] for props in guarded)
    full.template.resource_count_is("AWS::ApiGatewayV2::Authorizer", 1)
    props = guarded[0]
    assert props["AuthorizerResultTtlInSeconds"] == 0 and props["IdentitySource"] == []
    assert props["AuthorizerType"] == "REQUEST"
    assert props["EnableSimpleResponses"] is True
    assert props["AuthorizerPayloadFormatVersion"] == "2.0"


def test_cors_throttling_and_access_logs(full: Synthesized) -> None:
    full.template.has_resource_properties("AWS::ApiGatewayV2::Api", {
        "ProtocolType": "HTTP",
        "CorsConfiguration": Match.object_like({"AllowOrigins": ["http://localhost:3000"],
                                                "AllowHeaders": ["content-type", "x-api-key", "x-request-id",
                                                                 "traceparent"], "MaxAge": 300,
                                                "ExposeHeaders": Match.array_with(["x-request-id"])}),
    })
    full.template.has_resource_properties("AWS::ApiGatewayV2::Stage", {
        "StageName": "$default", "AutoDeploy": True,
        "DefaultRouteSettings": {"ThrottlingRateLimit": Match.any_value(), "ThrottlingBurstLimit": Match.any_value()},
        "AccessLogSettings": {"DestinationArn": Match.any_value(), "Format": Match.string_like_regexp("routeKey")},
    })


def test_each_async_function_has_a_queue_and_dlq_and_a_consumer(full: Synthesized) -> None:
    queues = full.built.stack.queues.by_function
    assert set(queues) == {"send_invoice", "flaky_webhook"}
    plans = {f.name: f for f in full.built.plan.functions}
    for name, pair in queues.items():
        queue_id = logical_id(full, pair.queue)
        dlq_id = logical_id(full, pair.dlq)
        props = full.raw["Resources"][queue_id]["Properties"]
        assert props["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq_id, "Arn"]}
        assert props["RedrivePolicy"]["maxReceiveCount"] == plans[name].queue.max_receive_count
        worker = lambda_env(full, name, "-worker")
        assert props["VisibilityTimeout"] >= 6 * worker["Timeout"]
        assert props["VisibilityTimeout"] >= 6 * plans[name].timeout_s
        assert worker["Handler"] == names.WORKER_HANDLER == "functions.aws.entry_worker.handler"
        full.template.has_resource_properties("AWS::Lambda::EventSourceMapping", {
            "EventSourceArn": {"Fn::GetAtt": [queue_id, "Arn"]},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": Match.any_value()},
        })
    assert plans["send_invoice"].queue.max_receive_count == 5
    fifo = full.raw["Resources"][logical_id(full, queues["flaky_webhook"].queue)]
    assert fifo["Properties"]["FifoQueue"] is True
    standard = full.raw["Resources"][logical_id(full, queues["send_invoice"].queue)]
    assert "FifoQueue" not in standard["Properties"]


def test_examples_shop_async_functions_have_queues(shop: Synthesized) -> None:
    project = load_project(SHOP)
    async_names = {name for name, spec in project.functions.items() if spec.is_async}
    assert set(shop.built.stack.queues.by_function) == async_names
    redrives = [r["Properties"]["RedrivePolicy"] for r in shop.resources("AWS::SQS::Queue").values()
                if "RedrivePolicy" in r["Properties"]]
    assert len(redrives) == len(async_names)
    expected = sorted(project.functions[n].config.retry.max_attempts for n in async_names)
    assert sorted(r["maxReceiveCount"] for r in redrives) == expected


def test_tables_reuse_the_adapters_schemas(full: Synthesized) -> None:
    full.template.resource_count_is("AWS::DynamoDB::Table", 4)  # spans, keys, rate limits, jobs
    full.template.has_resource_properties("AWS::DynamoDB::Table", {
        "KeySchema": [{"AttributeName": span_schema.PK, "KeyType": "HASH"},
                      {"AttributeName": span_schema.SK, "KeyType": "RANGE"}],
        "TimeToLiveSpecification": {"AttributeName": span_schema.TTL_ATTRIBUTE, "Enabled": True},
        "GlobalSecondaryIndexes": [Match.object_like({"IndexName": span_schema.GSI_NAME})],
        "BillingMode": "PAY_PER_REQUEST",
    })
    for table in full.resources("AWS::DynamoDB::Table").values():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        # PITR by stage profile: tests/infra/test_profiles.py
        assert "PointInTimeRecoveryEnabled" in props["PointInTimeRecoverySpecification"]


def test_runtime_lambdas(full: Synthesized) -> None:
    env = lambda_env(full, "create_order")
    assert env["Handler"] == names.HTTP_HANDLER == "functions.aws.entry_http.handler"
    assert env["Runtime"] == "python3.12"
    assert len(env["Layers"]) == 1
    variables = env["Environment"]["Variables"]
    assert variables["FLUX_FUNCTION"] == "create_order"
    assert variables["FLUX_DENO"] == "/opt/bin/deno"
    assert variables["FLUX_SECRETS_PREFIX"] == "flux/fullshop/dev/"
    assert {"DATABASE_SECRET_ARN", "DATABASE_HOST", "SPANS_TABLE", "FLUX_QUEUE_URLS", "FLUX_JOBS_TABLE"} <= set(variables)
    assert "KEYS_TABLE" not in variables and "RATE_LIMIT_TABLE" not in variables
    assert "VpcConfig" in env  # provisioned database: the runtime runs next to the proxy
    report = lambda_env(full, "orders_report_daily")
    assert report["Timeout"] > 25 and report["MemorySize"] >= 512
    queue_urls = variables["FLUX_QUEUE_URLS"]
    assert "Fn::Join" in queue_urls and "send_invoice" in json.dumps(queue_urls)
    assert "flaky_webhook" not in json.dumps(queue_urls)  # only the queues it may send to
    assert "FLUX_DLQ_URLS" not in variables  # only the CLI reads DLQs, from the stack outputs
    hello = lambda_env(full, "hello")["Environment"]["Variables"]
    assert "FLUX_QUEUE_URLS" not in hello and "FLUX_JOBS_TABLE" not in hello  # pushes nothing, is not async


def test_every_lambda_handler_is_a_functions_aws_entry_point(full: Synthesized) -> None:
    import importlib

    handlers = {r["Properties"]["Handler"] for r in full.resources("AWS::Lambda::Function").values()}
    assert handlers == {names.HTTP_HANDLER, names.WORKER_HANDLER, names.AUTHORIZER_HANDLER, names.ENGINE_HANDLER,
                        names.OBSERVABILITY_HANDLER}
    for handler in handlers:
        module, _, attribute = handler.rpartition(".")
        assert callable(getattr(importlib.import_module(module), attribute)), handler


def test_provisioned_database_is_aurora_serverless_behind_a_tls_proxy(full: Synthesized) -> None:
    full.template.has_resource_properties("AWS::RDS::DBCluster", {
        "Engine": "aurora-postgresql", "StorageEncrypted": True,
        "ServerlessV2ScalingConfiguration": Match.object_like({"MinCapacity": Match.any_value()}),
    })
    full.template.has_resource_properties("AWS::RDS::DBProxy", {"EngineFamily": "POSTGRESQL", "RequireTLS": True,
                                                                 "DBProxyName": "flux-fullshop-dev-proxy"})
    # The master user's (migrations) and the application role's (user code): nothing else is generated.
    full.template.resource_count_is("AWS::SecretsManager::Secret", 2)


def test_outputs(shop: Synthesized, full: Synthesized) -> None:
    for synth in (shop, full):
        outputs = synth.raw["Outputs"]
        assert outputs["ApiUrl"]["Value"]["Fn::GetAtt"][1] == "ApiEndpoint"
        assert outputs["DashboardUrl"]["Value"]["Fn::Join"][1][1] == "/_flux/"
    assert "EngineFunctionName" in full.raw["Outputs"] and "QueueUrls" in full.raw["Outputs"]


def test_the_template_is_account_and_region_agnostic(shop: Synthesized) -> None:
    text = shop.path.read_text()
    assert shop.built.stack.account.startswith("${Token") and shop.built.stack.region.startswith("${Token")
    assert "123456789012" not in text


def test_database_from_a_url_or_an_existing_secret(tmp_path, placeholder_cache) -> None:
    from cdk_nag import AwsSolutionsChecks

    from tests.infra.conftest import synthesize, write_project

    url_project = write_project(tmp_path / "url", {
        "flux.json": {"name": "urlshop", "database": {"url": "postgresql://app:pw@db.example.com/app"}},
        "functions": {"hello": {}}})
    synth = synthesize(url_project, tmp_path / "out-url", placeholder_cache)
    assert synth.raw["Parameters"]["DatabaseUrl"]["NoEcho"] is True
    assert "db.example.com" not in synth.path.read_text()  # the URL is a deploy-time parameter, not template text
    secrets = synth.resources("AWS::SecretsManager::Secret")
    (url_id,) = [sid for sid, body in secrets.items() if "DatabaseUrl" in json.dumps(body["Properties"])]
    (app_id,) = set(secrets) - {url_id}
    assert "GenerateSecretString" in secrets[app_id]["Properties"]
    # User code logs in as the application role; only the engine (migrations) sees the URL's owner.
    assert lambda_env(synth, "hello")["Environment"]["Variables"]["DATABASE_SECRET_ARN"] == {"Ref": app_id}
    assert "VpcConfig" not in lambda_env(synth, "hello")
    assert AwsSolutionsChecks(synth.built.app).validate_scope(synth.built.stack).success

    arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/db-AbCdEf"
    arn_project = write_project(tmp_path / "arn", {
        "flux.json": {"name": "arnshop", "database": {"secret_arn": arn}}, "functions": {"hello": {}}})
    synth = synthesize(arn_project, tmp_path / "out-arn", placeholder_cache)
    (app_id,) = synth.resources("AWS::SecretsManager::Secret")  # the application role's; the owner's is the user's
    assert lambda_env(synth, "hello")["Environment"]["Variables"]["DATABASE_SECRET_ARN"] == {"Ref": app_id}
    assert arn in synth.path.read_text()
    synth.template.resource_count_is("AWS::Lambda::Function", 4)  # hello, authorizer, observability, engine
    assert AwsSolutionsChecks(synth.built.app).validate_scope(synth.built.stack).success


def test_two_stages_share_no_fixed_physical_name(tmp_path, placeholder_cache) -> None:
    from tests.infra.conftest import FULL_PROJECT, synthesize, write_project

    project = write_project(tmp_path / "p", FULL_PROJECT)
    first = synthesize(project, tmp_path / "out-dev", placeholder_cache, stage="dev")
    second = synthesize(project, tmp_path / "out-prod", placeholder_cache, stage="prod")

    def physical_names(synth: Synthesized) -> dict[str, str]:
        found = {}
        for resource in synth.raw["Resources"].values():
            for key, value in resource.get("Properties", {}).items():
                # Names CloudFormation would create as given (account/region-unique ones among them).
                if key.endswith("Name") and isinstance(value, str) and key not in ("IndexName", "AttributeName",
                                                                                  "StageName"):
                    found[f"{resource['Type']}.{key}"] = value
        return found

    dev, prod = physical_names(first), physical_names(second)
    assert "AWS::RDS::DBProxy.DBProxyName" in dev
    clashes = {key for key in dev.keys() & prod.keys() if dev[key] == prod[key]}
    # Names scoped to their parent, not to the account and region: the authorizer's (per API), an inline policy's
    # (per role), the proxy target group's (always "default", per proxy), the database's (inside its cluster),
    # and the AWS-managed default parameter group the cluster refers to.
    assert clashes <= {"AWS::ApiGatewayV2::Authorizer.Name", "AWS::IAM::Policy.PolicyName",
                       "AWS::RDS::DBProxyTargetGroup.TargetGroupName", "AWS::RDS::DBCluster.DatabaseName",
                       "AWS::RDS::DBCluster.DBClusterParameterGroupName"}, clashes
