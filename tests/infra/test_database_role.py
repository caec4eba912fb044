"""The application database role in the template: which Lambda may read which database secret.

DESIGN §7: user code connects as the application role; migrations (the engine) as the owner. So the
runtime roles read the application secret and never the owner's (master) one; the engine reads both;
RDS Proxy lists both (its client authentication is per secret).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from functions.aws import names
from tests.infra.conftest import Synthesized, synthesize, write_project
from tests.infra.test_iam import as_list, referenced_ids, role_id, statements


def logical_id(synth: Synthesized, construct: Any) -> str:
    return synth.built.stack.resolve(construct.node.default_child.logical_id)


def secret_ids(synth: Synthesized) -> tuple[set[str], str]:
    """(the owner's secret and its target attachments, the application secret): logical ids."""
    database = synth.built.stack.database
    owner = database.cluster.node.find_child("Secret") if database.cluster is not None else database.secret
    attachments = set(synth.resources("AWS::SecretsManager::SecretTargetAttachment"))
    return {logical_id(synth, owner), *attachments}, logical_id(synth, database.app_secret)


def on(granted: dict[str, set[str]], targets: set[str]) -> set[str]:
    return set().union(*(granted.get(t, set()) for t in targets))


def secret_actions(synth: Synthesized, role: str) -> dict[str, set[str]]:
    """secret logical id → the secretsmanager actions ``role`` has on it."""
    found: dict[str, set[str]] = {}
    for statement in statements(synth, role):
        actions = {a for a in as_list(statement["Action"]) if a.startswith("secretsmanager:")}
        for target in referenced_ids(statement["Resource"]):
            if actions:
                found.setdefault(target, set()).update(actions)
    return found


def env_of(synth: Synthesized, made: Any) -> dict[str, Any]:
    function = synth.raw["Resources"][logical_id(synth, made.function)]
    return function["Properties"]["Environment"]["Variables"]


def runtime_functions(synth: Synthesized) -> list[Any]:
    stack = synth.built.stack
    return [*stack.runtime.http.values(), *stack.runtime.workers.values()]


def test_runtime_roles_read_the_application_secret_and_never_the_master_secret(full: Synthesized) -> None:
    owner, app = secret_ids(full)
    for made in runtime_functions(full):
        granted = secret_actions(full, role_id(full, made))
        assert not on(granted, owner), f"{made.node.path} may read the master secret"
        assert granted[app] == {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
        env = env_of(full, made)
        assert referenced_ids(env[names.DATABASE_SECRET_ARN]) == {app}
        assert names.DATABASE_APP_SECRET_ARN not in env
        assert names.DATABASE_HOST in env     # the proxy: the application secret has no host
        assert names.DATABASE_PORT in env     # nor a port (the master secret's comes from its target attachment)


def test_the_engine_reads_both_secrets_and_writes_neither_for_a_provisioned_cluster(full: Synthesized) -> None:
    owner, app = secret_ids(full)
    engine = full.built.stack.engine.lambda_
    granted = secret_actions(full, role_id(full, engine))
    assert on(granted, owner) == granted[app] == {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
    env = env_of(full, engine)
    # the master secret (through its target attachment, which adds the cluster's host), never the app's
    master = referenced_ids(env[names.DATABASE_SECRET_ARN])
    assert master and app not in master
    assert master <= owner
    assert referenced_ids(env[names.DATABASE_APP_SECRET_ARN]) == {app}


def test_the_application_secret_names_the_role_and_database_and_no_host(full: Synthesized) -> None:
    _, app = secret_ids(full)
    generate = full.raw["Resources"][app]["Properties"]["GenerateSecretString"]
    assert json.loads(generate["SecretStringTemplate"]) == {"username": "flux_app", "dbname": "fullshop"}
    assert generate["GenerateStringKey"] == "password" and generate["ExcludePunctuation"] is True
    for attachment in full.resources("AWS::SecretsManager::SecretTargetAttachment").values():
        assert referenced_ids(attachment["Properties"]["SecretId"]) != {app}


def test_the_proxy_lists_both_secrets(full: Synthesized) -> None:
    owner, app = secret_ids(full)
    (proxy,) = full.resources("AWS::RDS::DBProxy").values()
    listed = [referenced_ids(auth["SecretArn"]) for auth in proxy["Properties"]["Auth"]]
    assert len(listed) == 2 and {app} in listed
    assert any(ids & owner for ids in listed)


URL_PROJECT: dict[str, Any] = {"flux.json": {"name": "urlshop", "database": {"url": "postgresql://u@db.test/x"}},
                               "functions": {"hello": {"route": "/hello"}}}
OPT_OUT_PROJECT: dict[str, Any] = {
    "flux.json": {"name": "ownershop", "database": {"url": "postgresql://u@db.test/x", "app_role": False}},
    "functions": {"hello": {"route": "/hello"}}}


@pytest.fixture(scope="module")
def url_mode(placeholder_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    root = write_project(tmp_path_factory.mktemp("projects") / "urlshop", URL_PROJECT)
    return synthesize(root, tmp_path_factory.mktemp("cdk-url"), placeholder_cache)


def test_a_database_url_stack_has_the_same_scheme_and_the_engine_may_publish_the_address(url_mode: Synthesized) -> None:
    owner, app = secret_ids(url_mode)
    (hello,) = runtime_functions(url_mode)
    assert not on(secret_actions(url_mode, role_id(url_mode, hello)), owner)
    assert referenced_ids(env_of(url_mode, hello)[names.DATABASE_SECRET_ARN]) == {app}
    engine = secret_actions(url_mode, role_id(url_mode, url_mode.built.stack.engine.lambda_))
    assert on(engine, owner) == {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
    # PutSecretValue on the application secret only: the host the runtime cannot learn from the owner's secret
    assert engine[app] == {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret",
                           "secretsmanager:PutSecretValue"}
    generate = url_mode.raw["Resources"][app]["Properties"]["GenerateSecretString"]
    assert json.loads(generate["SecretStringTemplate"]) == {"username": "flux_app"}


def test_opting_out_leaves_one_secret_read_as_the_owner(placeholder_cache: Path,
                                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    root = write_project(tmp_path_factory.mktemp("projects") / "ownershop", OPT_OUT_PROJECT)
    synth = synthesize(root, tmp_path_factory.mktemp("cdk-owner"), placeholder_cache)
    assert synth.built.stack.database.app_secret is None
    assert len(synth.resources("AWS::SecretsManager::Secret")) == 1
    (hello,) = runtime_functions(synth)
    env = env_of(synth, hello)
    assert names.DATABASE_APP_SECRET_ARN not in env_of(synth, synth.built.stack.engine.lambda_)
    assert referenced_ids(env[names.DATABASE_SECRET_ARN]) == {logical_id(synth, synth.built.stack.database.secret)}
