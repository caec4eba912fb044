"""The deployment plan (pure): authorizer placement, Lambda sizing, queue settings, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from functions.shared.manifest import load_project
from infra.errors import InfraError
from infra.plan import (
    HTTP_INTEGRATION_MAX_S,
    LAMBDA_MAX_TIMEOUT_S,
    VISIBILITY_FACTOR,
    plan_stack,
    rds_name,
)
from tests.infra.conftest import FULL_PROJECT, write_project


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory):
    return plan_stack(load_project(write_project(tmp_path_factory.mktemp("plan") / "p", FULL_PROJECT)), "dev")


def by_name(plan, name):
    return next(f for f in plan.functions if f.name == name)


def test_authorizer_kind_follows_auth_and_rate_limit(plan) -> None:
    assert by_name(plan, "hello").authorizer == "none"  # public, no rate limit
    assert by_name(plan, "create_order").authorizer == "request"  # rate limited: every request counted
    assert by_name(plan, "get_order").authorizer == "request"  # authenticated: never a cached verdict
    assert by_name(plan, "orders_report_daily").authorizer == "request"


def test_project_rate_limit_meters_every_route(tmp_path: Path) -> None:
    spec = {"flux.json": {"name": "p", "rate_limit": {"requests": 5, "per_seconds": 1}},
            "functions": {"a": {}, "b": {"auth": "api_key"}}}
    plan = plan_stack(load_project(write_project(tmp_path / "p", spec)), "dev")
    assert {f.authorizer for f in plan.functions} == {"request"}


def test_lambda_timeout_and_memory_leave_headroom(plan) -> None:
    report = by_name(plan, "orders_report_daily")  # timeout_ms 25000
    assert report.timeout_s > 25
    assert report.integration_timeout_s == HTTP_INTEGRATION_MAX_S
    invoice = by_name(plan, "send_invoice")  # memory_mb 512
    assert invoice.memory_mb > 512 and invoice.memory_mb % 64 == 0


def test_queue_settings(plan) -> None:
    invoice = by_name(plan, "send_invoice").queue
    assert invoice is not None and not invoice.fifo
    assert invoice.max_receive_count == 5
    assert invoice.visibility_timeout_s >= VISIBILITY_FACTOR * invoice.consumer_timeout_s
    assert invoice.consumer_timeout_s >= invoice.batch_size * 20  # the batch runs its records one by one
    webhook = by_name(plan, "flaky_webhook").queue
    assert webhook is not None and webhook.fifo and webhook.max_receive_count == 2
    assert by_name(plan, "hello").queue is None


def test_a_very_long_job_gets_a_batch_of_one_within_lambda_limits(tmp_path: Path) -> None:
    spec = {"flux.json": {"name": "p"}, "functions": {"slow": {"async": True, "timeout_ms": 800_000}}}
    queue = plan_stack(load_project(write_project(tmp_path / "p", spec)), "dev").functions[0].queue
    assert queue.batch_size == 1
    assert queue.consumer_timeout_s <= LAMBDA_MAX_TIMEOUT_S
    assert queue.visibility_timeout_s >= VISIBILITY_FACTOR * queue.consumer_timeout_s


def test_refusals(tmp_path: Path) -> None:
    project = load_project(write_project(tmp_path / "ok", {"flux.json": {"name": "p"}, "functions": {"a": {}}}))
    for stage in ("", "1dev", "dev_1", "x" * 21):
        with pytest.raises(InfraError):
            plan_stack(project, stage)
    reserved = load_project(write_project(tmp_path / "r", {"flux.json": {"name": "p"},
                                                           "functions": {"a": {"route": "/_flux/x"}}}))
    with pytest.raises(InfraError, match="_flux"):
        plan_stack(reserved, "dev")


def test_warnings_name_long_sync_functions_and_a_missing_database(plan, tmp_path: Path) -> None:
    assert plan.warnings() == []
    spec = {"flux.json": {"name": "p"}, "functions": {"long": {"timeout_ms": 60_000}}}
    notes = plan_stack(load_project(write_project(tmp_path / "p", spec)), "dev").warnings()
    assert any("long" in n and "async" in n for n in notes)
    assert any("no database" in n for n in notes)


def test_fifo_consumers_take_one_record_at_a_time(tmp_path):
    import json

    from functions.shared.manifest import load_project
    from infra.plan import queue_plan

    (tmp_path / "flux.json").write_text(json.dumps({"name": "fifo"}))
    for name, config in (("ordered", {"async": True, "ordering": {"group_by": "account"}}),
                         ("plain", {"async": True})):
        (tmp_path / "functions" / name).mkdir(parents=True)
        (tmp_path / "functions" / name / "index.ts").write_text("export default async () => null;")
        (tmp_path / "functions" / name / "flux.json").write_text(json.dumps(config))
    project = load_project(tmp_path)
    ordered, plain = queue_plan(project.functions["ordered"]), queue_plan(project.functions["plain"])
    assert ordered.fifo and ordered.batch_size == 1
    assert not plain.fifo and plain.batch_size > 1


def test_the_proxy_name_is_unique_per_stack_and_follows_rds_rules(tmp_path: Path) -> None:
    project = load_project(write_project(tmp_path / "p", {"flux.json": {"name": "Shop-App"}, "functions": {"a": {}}}))
    dev, prod = plan_stack(project, "dev").proxy_name, plan_stack(project, "prod").proxy_name
    assert dev != prod and dev == "flux-shop-app-dev-proxy"
    rule = r"[a-z](?:-?[a-z0-9])*"
    long_one = rds_name("flux-" + "A" * 64 + "-stage-with-20chars-proxy")
    other = rds_name("flux-" + "A" * 64 + "-other-stage-name-xx-proxy")
    for name in (dev, long_one, other, rds_name("flux--x--y-"), rds_name("9-lives")):
        assert __import__("re").fullmatch(rule, name), name
        assert len(name) <= 63
    assert long_one != other  # truncated names stay apart through the hash of the whole stack name


# -- issue #13: grants from the invoke closure, reserved concurrency ------------------------------------------

def test_grants_follow_the_invoke_closure(plan) -> None:
    checkout = by_name(plan, "checkout")
    assert checkout.invoke_closure == ("checkout", "create_order")
    assert checkout.secrets == ("STRIPE_KEY",) and checkout.pushes == ("send_invoice",)
    assert checkout.http_sends_to == ("send_invoice",)
    get_order = by_name(plan, "get_order")
    assert get_order.invoke_closure == ("audit_trail", "get_order") and get_order.secrets == ("AUDIT_TOKEN",)
    assert get_order.pushes == ()
    hello = by_name(plan, "hello")
    assert (hello.invoke_closure, hello.secrets, hello.pushes, hello.http_sends_to) == (("hello",), (), (), ())


def test_an_async_function_sends_to_its_own_queue_from_its_route_only(plan) -> None:
    send_invoice = by_name(plan, "send_invoice")
    assert send_invoice.http_sends_to == ("send_invoice",)  # the route only enqueues: no user code runs there
    assert send_invoice.worker_sends_to == ("flaky_webhook",)
    flaky = by_name(plan, "flaky_webhook")
    assert flaky.http_sends_to == ("flaky_webhook",) and flaky.worker_sends_to == ()
    create_order = by_name(plan, "create_order")
    assert create_order.http_secrets == ("STRIPE_KEY",)


def test_an_async_function_s_route_reads_no_secret_and_its_worker_its_closure_s(tmp_path: Path) -> None:
    project = load_project(write_project(tmp_path / "p", {"flux.json": {"name": "s"}, "functions": {
        "job": {"async": True, "secrets": ["K"], "invokes": ["helper"]}, "helper": {"secrets": ["H"]}}}))
    job = next(f for f in plan_stack(project, "dev").functions if f.name == "job")
    assert job.http_secrets == () and job.secrets == ("H", "K")


def test_closure_of_a_cycle_and_a_chain(tmp_path: Path) -> None:
    from infra.plan import closure_grants, invoke_closure

    project = load_project(write_project(tmp_path / "p", {"flux.json": {"name": "cyc"}, "functions": {
        "a": {"invokes": ["b"], "secrets": ["A"]},
        "b": {"invokes": ["c", "a"], "pushes": ["job"]},
        "c": {"invokes": ["c"], "secrets": ["C", "A"]},
        "job": {"async": True, "secrets": ["J"]},
        "lone": {},
    }}))
    assert invoke_closure(project.functions, "a") == ("a", "b", "c")
    assert invoke_closure(project.functions, "c") == ("c",)
    assert closure_grants(project.functions, "a") == (("A", "C"), ("job",))
    assert closure_grants(project.functions, "b") == (("A", "C"), ("job",))
    # a push does not run the target in this Lambda: its secrets stay with its own worker
    assert "J" not in closure_grants(project.functions, "b")[0]
    assert closure_grants(project.functions, "lone") == ((), ())


def test_reserved_concurrency_per_function_and_for_the_stack(plan) -> None:
    from infra.plan import AUTHORIZER_CONCURRENCY, ENGINE_CONCURRENCY, OBSERVABILITY_CONCURRENCY

    assert by_name(plan, "hello").concurrency == 10 and by_name(plan, "checkout").concurrency == 7
    send_invoice = by_name(plan, "send_invoice")
    assert send_invoice.concurrency == 4 and send_invoice.queue.max_concurrency == 4  # never over its reservation
    assert send_invoice.reserved_concurrency == 8  # its route's Lambda and its worker
    functions = sum(f.concurrency * (2 if f.queue else 1) for f in plan.functions)
    assert plan.reserved_concurrency == functions + AUTHORIZER_CONCURRENCY + OBSERVABILITY_CONCURRENCY + \
        ENGINE_CONCURRENCY
