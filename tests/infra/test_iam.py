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
