"""Stage profiles in the template (infra/profile.py): what a dev stage leaves running, what prod keeps."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from infra.always_on import always_on, monthly_floor
from tests.infra.conftest import FULL_PROJECT, Synthesized, synthesize, write_project


def one(synth: Synthesized, kind: str) -> tuple[str, dict[str, Any]]:
    (found,) = synth.resources(kind).items()
    return found


def pitr(synth: Synthesized) -> dict[str, bool]:
    return {lid: r["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]
            for lid, r in synth.resources("AWS::DynamoDB::Table").items()}


def test_dev_aurora_scales_to_zero_and_pauses(shop: Synthesized) -> None:
    _, cluster = one(shop, "AWS::RDS::DBCluster")
    assert cluster["Properties"]["ServerlessV2ScalingConfiguration"] == {
        "MinCapacity": 0, "MaxCapacity": 8, "SecondsUntilAutoPause": 300}


def test_prod_aurora_keeps_its_floor_and_never_pauses(shop_prod: Synthesized) -> None:
    _, cluster = one(shop_prod, "AWS::RDS::DBCluster")
    scaling = cluster["Properties"]["ServerlessV2ScalingConfiguration"]
    assert scaling["MinCapacity"] == 0.5 and "SecondsUntilAutoPause" not in scaling
    assert cluster["Properties"]["DeletionProtection"] is True


def test_dev_has_no_proxy_and_the_runtime_connects_to_the_cluster_endpoint(shop: Synthesized) -> None:
    assert shop.resources("AWS::RDS::DBProxy") == {}
    cluster_id, _ = one(shop, "AWS::RDS::DBCluster")
    lambdas = [r["Properties"] for r in shop.resources("AWS::Lambda::Function").values()
               if "DATABASE_HOST" in r["Properties"].get("Environment", {}).get("Variables", {})]
    assert lambdas
    for props in lambdas:
        assert props["Environment"]["Variables"]["DATABASE_HOST"] == {"Fn::GetAtt": [cluster_id, "Endpoint.Address"]}
    # and the Lambdas' security group may reach the cluster's port
    ingress = [r["Properties"] for r in shop.resources("AWS::EC2::SecurityGroupIngress").values()
               if r["Properties"].get("FromPort") == {"Fn::GetAtt": [cluster_id, "Endpoint.Port"]}]
    assert any("LambdaSg" in json.dumps(i["SourceSecurityGroupId"]) for i in ingress), ingress


def test_prod_has_a_tls_proxy_that_the_runtime_uses(shop_prod: Synthesized) -> None:
    proxy_id, proxy = one(shop_prod, "AWS::RDS::DBProxy")
    assert proxy["Properties"]["RequireTLS"] is True
    hosts = {json.dumps(r["Properties"]["Environment"]["Variables"]["DATABASE_HOST"])
             for r in shop_prod.resources("AWS::Lambda::Function").values()
             if "DATABASE_HOST" in r["Properties"].get("Environment", {}).get("Variables", {})}
    assert hosts == {json.dumps({"Fn::GetAtt": [proxy_id, "Endpoint"]})}


def test_database_proxy_setting_overrides_the_profile(tmp_path: Path, placeholder_cache: Path) -> None:
    spec = copy.deepcopy(FULL_PROJECT)
    spec["flux.json"]["database"] = {"provision": True, "proxy": True}
    spec["flux.json"]["stages"] = {"staging": {"profile": "dev"}, "live": {"profile": "prod"}}
    project = write_project(tmp_path / "p", spec)
    dev = synthesize(project, tmp_path / "dev", placeholder_cache, stage="staging")
    assert len(dev.resources("AWS::RDS::DBProxy")) == 1
    assert pitr(dev)  # still the dev profile otherwise
    assert not all(pitr(dev).values())
    live = synthesize(project, tmp_path / "live", placeholder_cache, stage="live")
    assert all(pitr(live).values()) and live.built.plan.profile.name == "prod"


def test_flow_logs_dev_rejects_only_for_the_project_retention_and_deleted(shop: Synthesized) -> None:
    _, flow = one(shop, "AWS::EC2::FlowLog")
    assert flow["Properties"]["TrafficType"] == "REJECT"
    group_id = flow["Properties"]["LogGroupName"]["Ref"]
    group = shop.raw["Resources"][group_id]
    assert group["Properties"]["RetentionInDays"] == 14   # examples/shop: observability.retention_days
    assert group["DeletionPolicy"] == "Delete" and group["UpdateReplacePolicy"] == "Delete"


def test_flow_logs_prod_all_traffic_kept_two_years(shop_prod: Synthesized) -> None:
    _, flow = one(shop_prod, "AWS::EC2::FlowLog")
    assert flow["Properties"]["TrafficType"] == "ALL"
    group = shop_prod.raw["Resources"][flow["Properties"]["LogGroupName"]["Ref"]]
    assert group["Properties"]["RetentionInDays"] == 731 and group["DeletionPolicy"] == "Retain"


@pytest.mark.parametrize("which,retention,policy", [("shop", 14, "Delete"), ("shop_prod", 731, "Retain")])
def test_the_aurora_log_export_has_a_retention(which: str, retention: int, policy: str, request) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    cluster_id, cluster = one(synth, "AWS::RDS::DBCluster")
    name = cluster["Properties"]["DBClusterIdentifier"]
    assert cluster["Properties"]["EnableCloudwatchLogsExports"] == ["postgresql"]
    groups = {lid: r for lid, r in synth.resources("AWS::Logs::LogGroup").items()
              if r["Properties"].get("LogGroupName") == f"/aws/rds/cluster/{name}/postgresql"}
    (group_id, group), = groups.items()
    assert group["Properties"]["RetentionInDays"] == retention and group["DeletionPolicy"] == policy
    assert group_id in synth.raw["Resources"][cluster_id]["DependsOn"]   # exists before RDS would create it


def test_dev_pitr_only_on_user_state(shop: Synthesized) -> None:
    flags = pitr(shop)
    on = {lid for lid, enabled in flags.items() if enabled}
    assert {lid.split("Tables")[1][:6] for lid in on} == {"ApiKey", "Jobs31"}
    assert all(not enabled for lid, enabled in flags.items() if "Spans" in lid or "RateLimits" in lid)


def test_prod_pitr_everywhere_and_retained(shop_prod: Synthesized) -> None:
    assert all(pitr(shop_prod).values())
    assert {r["DeletionPolicy"] for r in shop_prod.resources("AWS::DynamoDB::Table").values()} == {"Retain"}


@pytest.mark.parametrize("which", ["shop", "shop_prod"])
def test_secrets_manager_and_sqs_endpoints_accept_https_from_the_lambdas(which: str, request) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    endpoints = synth.resources("AWS::EC2::VPCEndpoint")
    interface = {json.dumps(e["Properties"]["ServiceName"]): e["Properties"] for e in endpoints.values()
                 if e["Properties"].get("VpcEndpointType") == "Interface"}
    assert len(interface) == 2
    assert any("secretsmanager" in k for k in interface) and any(".sqs" in k for k in interface)
    gateway = [e for e in endpoints.values() if e["Properties"].get("VpcEndpointType") == "Gateway"]
    assert len(gateway) == 1 and "dynamodb" in json.dumps(gateway[0]["Properties"]["ServiceName"])
    (groups,) = {json.dumps(p["SecurityGroupIds"]) for p in interface.values()}
    for props in interface.values():
        assert props["PrivateDnsEnabled"] is True
        assert len(props["SubnetIds"]) == 2   # one per AZ
    (sg_ref,) = json.loads(groups)
    sg_id = sg_ref["Fn::GetAtt"][0]
    rules = [r["Properties"] for r in synth.resources("AWS::EC2::SecurityGroupIngress").values()
             if r["Properties"]["GroupId"] == {"Fn::GetAtt": [sg_id, "GroupId"]}]
    inline = synth.raw["Resources"][sg_id]["Properties"].get("SecurityGroupIngress", [])
    assert inline == []
    assert len(rules) == 1 and rules[0]["FromPort"] == rules[0]["ToPort"] == 443
    assert "LambdaSg" in rules[0]["SourceSecurityGroupId"]["Fn::GetAtt"][0]


@pytest.mark.parametrize("which", ["shop", "shop_prod", "full"])
def test_no_nat_gateway_without_allow_net(which: str, request) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    assert synth.resources("AWS::EC2::NatGateway") == {}
    assert synth.resources("AWS::EC2::InternetGateway") == {}
    subnets = synth.resources("AWS::EC2::Subnet").values()
    assert not any(s["Properties"].get("MapPublicIpOnLaunch") for s in subnets)


def test_a_function_with_allow_net_gets_a_nat_gateway(tmp_path: Path, placeholder_cache: Path) -> None:
    spec = copy.deepcopy(FULL_PROJECT)
    spec["functions"]["hello"] = {"route": "/hello", "method": "POST", "allow_net": ["api.example.com"]}
    project = write_project(tmp_path / "p", spec)
    dev = synthesize(project, tmp_path / "dev", placeholder_cache)
    assert len(dev.resources("AWS::EC2::NatGateway")) == 1
    prod = synthesize(project, tmp_path / "prod", placeholder_cache, stage="prod")
    assert len(prod.resources("AWS::EC2::NatGateway")) == 2   # one per AZ
    # the endpoints stay: a cold start still does not depend on the NAT
    assert len([e for e in dev.resources("AWS::EC2::VPCEndpoint").values()
                if e["Properties"]["VpcEndpointType"] == "Interface"]) == 2


def test_always_on_table_dev_and_prod(shop: Synthesized, shop_prod: Synthesized) -> None:
    dev = {row.resource: row for row in always_on(shop.raw)}
    prod = {row.resource: row for row in always_on(shop_prod.raw)}
    assert "RDS Proxy" not in dev and "NAT gateway (+ its public IPv4)" not in dev
    assert dev["Aurora Serverless v2 instance"].monthly_usd == 0
    assert dev["interface VPC endpoint (per AZ)"].count == 4
    assert prod["RDS Proxy"].monthly_usd == pytest.approx(87.6)
    assert prod["Aurora Serverless v2 instance"].monthly_usd == pytest.approx(43.8)
    assert monthly_floor(list(dev.values())) < monthly_floor(list(prod.values())) / 4
