"""Least privilege, read off the synthesized template's IAM policies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from infra.constructs.tables import BUCKET_WRITER, KEY_CHECKER, SPAN_WRITER
from tests.infra.conftest import Synthesized

DATA_SERVICES = ("dynamodb:", "sqs:", "secretsmanager:", "s3:", "rds-db:", "rds-data:", "kms:")


def referenced_ids(value: Any) -> set[str]:
    """Logical ids a template fragment refers to (Ref / Fn::GetAtt), at any depth."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            found.add(value["Ref"])
        if "Fn::GetAtt" in value:
            found.add(value["Fn::GetAtt"][0])
        for inner in value.values():
            found |= referenced_ids(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= referenced_ids(inner)
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(synth: Synthesized, role_id: str | None = None) -> Iterator[dict[str, Any]]:
    """Every Allow/Deny statement of the inline policies (of one role, or of all)."""
    for policy in synth.resources("AWS::IAM::Policy").values():
        roles = {r.get("Ref") for r in policy["Properties"].get("Roles", [])}
        if role_id is None or role_id in roles:
            yield from policy["Properties"]["PolicyDocument"]["Statement"]
    for role_key, role in synth.resources("AWS::IAM::Role").items():
        if role_id is None or role_id == role_key:
            for inline in role["Properties"].get("Policies", []):
                yield from inline["PolicyDocument"]["Statement"]


def role_id(synth: Synthesized, made) -> str:
    return synth.built.stack.resolve(made.role.node.default_child.logical_id)


def ids(synth: Synthesized, *constructs) -> set[str]:
    return {synth.built.stack.resolve(c.node.default_child.logical_id) for c in constructs}


def db_secret_ids(synth: Synthesized) -> set[str]:
    return set(synth.resources("AWS::SecretsManager::Secret")) | set(
        synth.resources("AWS::SecretsManager::SecretTargetAttachment"))


def test_authorizer_reads_only_the_key_and_rate_limit_tables(full: Synthesized) -> None:
    stack = full.built.stack
    authorizer_role = role_id(full, stack.authorizer.lambda_)
    tables = stack.tables
    allowed_tables = ids(full, tables.keys, tables.rate_limits)
    all_tables = set(full.resources("AWS::DynamoDB::Table"))
    dynamo_actions: set[str] = set()
    for statement in statements(full, authorizer_role):
        actions = as_list(statement["Action"])
        touched = referenced_ids(statement["Resource"])
        assert not touched & db_secret_ids(full), "the authorizer must not read the database secret"
        if any(a.startswith("dynamodb:") for a in actions):
            assert touched & all_tables <= allowed_tables
            dynamo_actions.update(actions)
        if any(a.startswith("secretsmanager:") for a in actions):
            assert actions == ["secretsmanager:GetSecretValue"]
            assert "flux/fullshop/dev/JWT_SECRET-??????" in json.dumps(statement["Resource"])
    assert dynamo_actions == set(KEY_CHECKER) | set(BUCKET_WRITER)


def test_only_runtime_engine_and_the_proxy_read_the_database_secret(full: Synthesized) -> None:
    stack = full.built.stack
    readers = {role_id(full, made) for made in [*stack.runtime.http.values(), *stack.runtime.workers.values(),
                                                 stack.engine.lambda_]}
    proxy_role = {k for k, r in full.resources("AWS::IAM::Role").items()
                  if "rds.amazonaws.com" in json.dumps(r["Properties"]["AssumeRolePolicyDocument"])}
    assert len(proxy_role) == 1  # RDS Proxy reads the credentials to open its pooled connections
    secret_ids = db_secret_ids(full)
    seen_readers = set()
    for policy in full.resources("AWS::IAM::Policy").values():
        touches = any(referenced_ids(s["Resource"]) & secret_ids for s in policy["Properties"]["PolicyDocument"]
                      ["Statement"])
        if touches:
            roles = {r["Ref"] for r in policy["Properties"]["Roles"]}
            assert roles <= readers | proxy_role, roles
            seen_readers |= roles
    assert readers <= seen_readers  # every runtime and engine role really can read it


def test_observability_reads_spans_and_checks_keys_only(full: Synthesized) -> None:
    stack = full.built.stack
    observe = role_id(full, stack.observability.lambda_)
    (keys,) = ids(full, stack.tables.keys)
    (spans,) = ids(full, stack.tables.spans)
    for statement in statements(full, observe):
        actions = set(as_list(statement["Action"]))
        touched = referenced_ids(statement["Resource"])
        if keys in touched:
            assert actions == set(KEY_CHECKER)
        if spans in touched:
            assert actions == {"dynamodb:Query", "dynamodb:GetItem"}
        assert not touched & (db_secret_ids(full) | ids(full, stack.tables.rate_limits))


def test_runtime_writes_spans_and_never_touches_keys_or_buckets(full: Synthesized) -> None:
    stack = full.built.stack
    forbidden = ids(full, stack.tables.keys, stack.tables.rate_limits)
    (spans,) = ids(full, stack.tables.spans)
    for made in [*stack.runtime.http.values(), *stack.runtime.workers.values()]:
        for statement in statements(full, role_id(full, made)):
            touched = referenced_ids(statement["Resource"])
            assert not touched & forbidden
            if spans in touched:
                assert set(as_list(statement["Action"])) == set(SPAN_WRITER)


@pytest.mark.parametrize("which", ["shop", "full"])
def test_no_policy_grants_wildcard_actions_or_wildcard_data_resources(which: str, request) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    checked = 0
    for statement in statements(synth):
        if statement.get("Effect") != "Allow":
            continue
        checked += 1
        actions = as_list(statement["Action"])
        assert not any("*" in action for action in actions), statement
        if any(action.startswith(DATA_SERVICES) for action in actions):
            assert "*" not in as_list(statement["Resource"]), statement
    assert checked > 10



def test_observability_may_invoke_exactly_the_engine_function(full: Synthesized) -> None:
    stack = full.built.stack
    assert stack.engine is not None
    observe = role_id(full, stack.observability.lambda_)
    (engine,) = ids(full, stack.engine.lambda_.function)
    invokes = [s for s in statements(full, observe) if "lambda:InvokeFunction" in as_list(s["Action"])]
    assert len(invokes) == 1
    assert referenced_ids(invokes[0]["Resource"]) == {engine}
    assert not any(str(r).endswith(":*") for r in as_list(invokes[0]["Resource"]))
    env = full.template.find_resources("AWS::Lambda::Function")[
        ids(full, stack.observability.lambda_.function).pop()]["Properties"]["Environment"]["Variables"]
    assert env["ENGINE_FUNCTION"] == {"Ref": engine}


# -- issue #13: per-function grants from the invoke closure, no managed VPC policy, reserved concurrency ------

def runtime_role(synth: Synthesized, function: str, worker: bool = False) -> str:
    runtime = synth.built.stack.runtime
    return role_id(synth, runtime.workers[function] if worker else runtime.http[function])


def secret_resources(synth: Synthesized, role: str) -> list[str]:
    """The Resource of every statement of ``role`` that allows a Secrets Manager action, as JSON text."""
    return [json.dumps(s["Resource"]) for s in statements(synth, role)
            if any(a.startswith("secretsmanager:") for a in as_list(s["Action"]))]


def declared_secrets(synth: Synthesized, role: str) -> set[str]:
    """The project secret names a role may read (from the ``flux/<project>/<stage>/<NAME>-??????`` ARNs)."""
    import re

    prefix = synth.built.plan.secrets_prefix
    found = set()
    for text in secret_resources(synth, role):
        found |= set(re.findall(re.escape(prefix) + r"([A-Za-z0-9_.-]+)-\?{6}", text))
    return found


def queues_sent_to(synth: Synthesized, role: str) -> set[str]:
    """The functions whose queue ``role`` may SendMessage to (none of the DLQs, ever). A worker's other SQS
    actions (receive, delete, change visibility) are its event source's, on its own queue only."""
    by_id = {synth.built.stack.resolve(q.queue.node.default_child.logical_id): name
             for name, q in synth.built.stack.queues.by_function.items()}
    sent: set[str] = set()
    for statement in statements(synth, role):
        actions = as_list(statement["Action"])
        if any(a.startswith("sqs:") for a in actions) and "sqs:SendMessage" not in actions:
            assert "sqs:ReceiveMessage" in actions and len(referenced_ids(statement["Resource"])) == 1, statement
        elif any(a.startswith("sqs:") for a in actions):
            assert actions == ["sqs:SendMessage"], statement
            touched = referenced_ids(statement["Resource"])
            assert touched <= set(by_id), f"{role} may send to a queue that is not a function's: {touched}"
            sent |= {by_id[t] for t in touched}
    return sent


def test_hello_reads_no_project_secret_and_no_prefix(full: Synthesized) -> None:
    hello = runtime_role(full, "hello")
    assert declared_secrets(full, hello) == set()
    for text in secret_resources(full, hello):
        assert full.built.plan.secrets_prefix not in text, "a function that declares no secret gets no project grant"
        assert referenced_ids(json.loads(text)) <= db_secret_ids(full)  # what it connects to the database with


def test_hello_cannot_read_the_master_database_secret(full: Synthesized) -> None:
    cluster = full.built.stack.database.cluster
    master = {full.built.stack.resolve(cluster.node.find_child("Secret").node.default_child.logical_id)} | set(
        full.resources("AWS::SecretsManager::SecretTargetAttachment"))
    for text in secret_resources(full, runtime_role(full, "hello")):
        assert not referenced_ids(json.loads(text)) & master


def test_no_runtime_role_reads_by_prefix_and_each_reads_its_closure_s_secrets(full: Synthesized) -> None:
    expected = {"hello": set(), "create_order": {"STRIPE_KEY"}, "checkout": {"STRIPE_KEY"},
                "get_order": {"AUDIT_TOKEN"}, "audit_trail": {"AUDIT_TOKEN"}, "send_invoice": set()}
    for function, names in expected.items():
        assert declared_secrets(full, runtime_role(full, function)) == names, function
    prefix_wildcard = f"{full.built.plan.secrets_prefix}*"
    for role in [role_id(full, made) for made in [*full.built.stack.runtime.http.values(),
                                                   *full.built.stack.runtime.workers.values()]]:
        assert not any(prefix_wildcard in text for text in secret_resources(full, role))
        assert "JWT_SECRET" not in declared_secrets(full, role)  # the gateway's own secret, declared by no function


def test_queue_grants_follow_pushes_and_the_invoke_closure(full: Synthesized) -> None:
    assert queues_sent_to(full, runtime_role(full, "hello")) == set()  # hello cannot SendMessage at all
    assert not any(a.startswith("sqs:") for s in statements(full, runtime_role(full, "hello"))
                   for a in as_list(s["Action"]))
    assert queues_sent_to(full, runtime_role(full, "create_order")) == {"send_invoice"}
    assert queues_sent_to(full, runtime_role(full, "checkout")) == {"send_invoice"}  # through invokes
    assert queues_sent_to(full, runtime_role(full, "get_order")) == set()
    # an async function's route only enqueues itself; its worker sends only where its code pushes
    assert queues_sent_to(full, runtime_role(full, "send_invoice")) == {"send_invoice"}
    assert queues_sent_to(full, runtime_role(full, "send_invoice", worker=True)) == {"flaky_webhook"}
    assert queues_sent_to(full, runtime_role(full, "flaky_webhook", worker=True)) == set()


def test_the_job_table_only_for_lambdas_that_send_or_settle(full: Synthesized) -> None:
    (jobs,) = ids(full, full.built.stack.tables.jobs)

    def touches_jobs(role: str) -> bool:
        return any(jobs in referenced_ids(s["Resource"]) for s in statements(full, role))

    assert not touches_jobs(runtime_role(full, "hello")) and not touches_jobs(runtime_role(full, "get_order"))
    assert touches_jobs(runtime_role(full, "create_order")) and touches_jobs(runtime_role(full, "flaky_webhook"))
    assert touches_jobs(runtime_role(full, "flaky_webhook", worker=True))


@pytest.mark.parametrize("which", ["shop", "full"])
def test_no_statement_grants_logs_star_or_logs_on_every_resource(which: str, request) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    log_statements = 0
    for statement in statements(synth):
        actions = as_list(statement["Action"])
        if not any(a.startswith("logs:") or a == "*" for a in actions):
            continue
        log_statements += 1
        assert "logs:*" not in actions and "*" not in actions, statement
        assert "*" not in as_list(statement["Resource"]), statement
    assert log_statements > 5


def test_each_function_writes_only_its_own_log_group(full: Synthesized) -> None:
    stack = full.built.stack
    lambdas = [*stack.runtime.http.values(), *stack.runtime.workers.values(), stack.authorizer.lambda_,
               stack.observability.lambda_, stack.engine.lambda_]
    for made in lambdas:
        (own,) = ids(full, made.log_group)
        for statement in statements(full, role_id(full, made)):
            if any(a.startswith("logs:") for a in as_list(statement["Action"])):
                assert referenced_ids(statement["Resource"]) == {own}


@pytest.mark.parametrize("which", ["shop", "full"])
def test_no_role_carries_a_managed_policy(which: str, request) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    lambda_roles = {k: r for k, r in synth.resources("AWS::IAM::Role").items()
                    if "lambda.amazonaws.com" in json.dumps(r["Properties"]["AssumeRolePolicyDocument"])}
    assert lambda_roles
    for key, role in lambda_roles.items():
        assert not role["Properties"].get("ManagedPolicyArns"), (key, role["Properties"]["ManagedPolicyArns"])
    assert "AWSLambdaVPCAccessExecutionRole" not in synth.path.read_text()


def test_vpc_functions_get_exactly_the_eni_actions_scoped_to_the_vpc(full: Synthesized) -> None:
    from infra.constructs.function import ENI_DESCRIBE_ACTIONS, ENI_MANAGE_ACTIONS

    (vpc,) = full.resources("AWS::EC2::VPC")
    for made in [*full.built.stack.runtime.http.values(), full.built.stack.engine.lambda_]:
        ec2 = [s for s in statements(full, role_id(full, made))
               if any(a.startswith("ec2:") for a in as_list(s["Action"]))]
        assert len(ec2) == 2
        describe = next(s for s in ec2 if s["Resource"] == "*")
        assert set(as_list(describe["Action"])) == set(ENI_DESCRIBE_ACTIONS) and "Condition" not in describe
        manage = next(s for s in ec2 if s is not describe)
        assert set(as_list(manage["Action"])) == set(ENI_MANAGE_ACTIONS)
        assert "*" not in as_list(manage["Resource"])
        assert {r for r in referenced_ids(manage["Condition"]["ArnEquals"]["ec2:Vpc"])
                if not r.startswith("AWS::")} == {vpc}
    authorizer = role_id(full, full.built.stack.authorizer.lambda_)  # not in the VPC: no EC2 at all
    assert not any(a.startswith("ec2:") for s in statements(full, authorizer) for a in as_list(s["Action"]))


@pytest.mark.parametrize("which", ["shop", "full"])
def test_every_lambda_has_reserved_concurrency(which: str, request) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    functions = synth.resources("AWS::Lambda::Function")
    assert len(functions) > 4
    for key, resource in functions.items():
        reserved = resource["Properties"].get("ReservedConcurrentExecutions")
        assert isinstance(reserved, int) and reserved >= 1, key
    assert sum(r["Properties"]["ReservedConcurrentExecutions"] for r in functions.values()) == \
        synth.built.plan.reserved_concurrency


def test_reserved_concurrency_comes_from_flux_json_and_bounds_the_event_source(full: Synthesized) -> None:
    from infra.plan import AUTHORIZER_CONCURRENCY

    stack = full.built.stack

    def reserved(made) -> int:
        return full.raw["Resources"][ids(full, made.function).pop()]["Properties"]["ReservedConcurrentExecutions"]

    assert reserved(stack.runtime.http["hello"]) == 10 and reserved(stack.runtime.http["checkout"]) == 7
    assert reserved(stack.runtime.workers["send_invoice"]) == 4
    assert reserved(stack.authorizer.lambda_) == AUTHORIZER_CONCURRENCY
    for name, worker in stack.runtime.workers.items():
        (function,) = ids(full, worker.function)
        (mapping,) = [m for m in full.resources("AWS::Lambda::EventSourceMapping").values()
                      if m["Properties"]["FunctionName"] == {"Ref": function}]
        assert 2 <= mapping["Properties"]["ScalingConfig"]["MaximumConcurrency"] <= reserved(worker), name


def test_stage_and_unauthenticated_routes_are_throttled(full: Synthesized) -> None:
    from infra.plan import STAGE_BURST_LIMIT, STAGE_RATE_LIMIT

    (stage,) = full.resources("AWS::ApiGatewayV2::Stage").values()
    default = stage["Properties"]["DefaultRouteSettings"]
    assert (default["ThrottlingRateLimit"], default["ThrottlingBurstLimit"]) == (STAGE_RATE_LIMIT, STAGE_BURST_LIMIT)
    routes = stage["Properties"]["RouteSettings"]
    assert set(routes) == {"$default", "GET /_flux", "GET /_flux/{proxy+}"}
    for key, settings in routes.items():
        assert settings["ThrottlingRateLimit"] < STAGE_RATE_LIMIT and settings["ThrottlingBurstLimit"] < \
            STAGE_BURST_LIMIT, key
    # API Gateway refuses route settings for a route that does not exist yet: the stage waits for them
    route_ids = {k for k, r in full.resources("AWS::ApiGatewayV2::Route").items()
                 if r["Properties"]["RouteKey"] in routes}
    assert len(route_ids) == 3 and route_ids <= set(stage["DependsOn"])
