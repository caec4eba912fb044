"""infra/always_on.py: the always-on rows of a template, a pure function (no CDK, no AWS)."""

from __future__ import annotations

import pytest

from infra.always_on import HOURS_PER_MONTH, always_on, monthly_floor


def template(*resources: tuple[str, dict]) -> dict:
    return {"Resources": {f"R{i}": {"Type": kind, "Properties": props} for i, (kind, props) in enumerate(resources)}}


def rows(t: dict) -> dict[str, tuple[int, float]]:
    return {r.resource: (r.count, r.monthly_usd) for r in always_on(t)}


def test_an_empty_template_costs_nothing_idle() -> None:
    assert always_on({"Resources": {}}) == [] and monthly_floor([]) == 0


def test_usage_billed_resources_are_not_listed() -> None:
    t = template(("AWS::Lambda::Function", {}), ("AWS::DynamoDB::Table", {}), ("AWS::SQS::Queue", {}),
                 ("AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Gateway"}))
    assert always_on(t) == []


def test_nat_gateways_and_interface_endpoints_per_az() -> None:
    t = template(("AWS::EC2::NatGateway", {}), ("AWS::EC2::NatGateway", {}),
                 ("AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Interface", "SubnetIds": ["a", "b"]}))
    found = rows(t)
    assert found["NAT gateway (+ its public IPv4)"] == (2, pytest.approx(2 * 0.05 * HOURS_PER_MONTH))
    assert found["interface VPC endpoint (per AZ)"] == (2, pytest.approx(2 * 0.01 * HOURS_PER_MONTH))


def _aurora(min_acu: float, pause: int | None = None) -> list[tuple[str, dict]]:
    scaling = {"MinCapacity": min_acu, "MaxCapacity": 8, **({"SecondsUntilAutoPause": pause} if pause else {})}
    return [("AWS::RDS::DBCluster", {"ServerlessV2ScalingConfiguration": scaling}),
            ("AWS::RDS::DBInstance", {"DBInstanceClass": "db.serverless"})]


def test_aurora_that_pauses_has_no_compute_floor() -> None:
    (row,) = always_on(template(*_aurora(0, 300)))
    assert row.monthly_usd == 0 and "pauses after 300 s" in row.why


def test_aurora_floor_and_the_proxy_minimum_of_8_acus() -> None:
    found = rows(template(*_aurora(0.5), ("AWS::RDS::DBProxy", {})))
    assert found["Aurora Serverless v2 instance"] == (1, pytest.approx(0.5 * 0.12 * HOURS_PER_MONTH))
    assert found["RDS Proxy"] == (1, pytest.approx(8 * 0.015 * HOURS_PER_MONTH))


def test_rows_are_sorted_most_expensive_first_and_summed() -> None:
    found = always_on(template(*_aurora(0.5), ("AWS::RDS::DBProxy", {}), ("AWS::SecretsManager::Secret", {})))
    assert [r.resource for r in found] == ["RDS Proxy", "Aurora Serverless v2 instance", "Secrets Manager secret"]
    assert monthly_floor(found) == pytest.approx(87.6 + 43.8 + 0.4)
