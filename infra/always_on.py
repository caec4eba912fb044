"""The always-on resources of a synthesized stack: what a stage costs while nobody calls it.

`flux synth` prints this table so the cost of leaving a stage running is visible
before it is deployed. It is a pure function over the template (no AWS call, no
pricing API): each row is a resource type billed by the hour or the month whatever
the traffic, with its count and its monthly floor at us-east-1 on-demand list prices
(checked against the AWS pricing pages; they change rarely, and this is a floor,
not a bill: storage, requests, log ingestion and data processing come on top).
Resources billed only by use (Lambda, API Gateway, SQS, DynamoDB on demand) are not
listed: idle, they cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

HOURS_PER_MONTH = 730
NAT_GATEWAY_HOUR = 0.045          # per NAT gateway
PUBLIC_IPV4_HOUR = 0.005          # per Elastic IP (the NAT gateway's)
INTERFACE_ENDPOINT_AZ_HOUR = 0.01  # per interface endpoint, per AZ (subnet) it is in
AURORA_ACU_HOUR = 0.12            # Aurora Serverless v2, PostgreSQL, standard storage configuration
RDS_PROXY_ACU_HOUR = 0.015        # RDS Proxy on Serverless v2: per ACU of the cluster, at least 8 ACUs
RDS_PROXY_MIN_ACU = 8
SECRET_MONTH = 0.40               # per Secrets Manager secret
ALARM_MONTH = 0.10                # per standard-resolution CloudWatch alarm

Resources = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class AlwaysOn:
    resource: str
    count: int
    why: str
    monthly_usd: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _of_type(resources: Resources, kind: str) -> list[Mapping[str, Any]]:
    return [r.get("Properties", {}) for r in resources.values() if r.get("Type") == kind]


def _nat(resources: Resources) -> AlwaysOn | None:
    count = len(_of_type(resources, "AWS::EC2::NatGateway"))
    if not count:
        return None
    return AlwaysOn("NAT gateway (+ its public IPv4)", count, "egress for functions with allow_net hosts",
                    round(count * (NAT_GATEWAY_HOUR + PUBLIC_IPV4_HOUR) * HOURS_PER_MONTH, 2))


def _endpoints(resources: Resources) -> AlwaysOn | None:
    interface = [p for p in _of_type(resources, "AWS::EC2::VPCEndpoint") if p.get("VpcEndpointType") == "Interface"]
    if not interface:
        return None
    azs = sum(len(p.get("SubnetIds", [])) or 1 for p in interface)
    return AlwaysOn("interface VPC endpoint (per AZ)", azs,
                    "Secrets Manager and SQS without a NAT on the cold-start path",
                    round(azs * INTERFACE_ENDPOINT_AZ_HOUR * HOURS_PER_MONTH, 2))


def _min_acu(resources: Resources) -> float:
    clusters = _of_type(resources, "AWS::RDS::DBCluster")
    return sum(float(c.get("ServerlessV2ScalingConfiguration", {}).get("MinCapacity", 0)) for c in clusters)


def _aurora(resources: Resources) -> AlwaysOn | None:
    instances = [p for p in _of_type(resources, "AWS::RDS::DBInstance") if p.get("DBInstanceClass") == "db.serverless"]
    if not instances:
        return None
    min_acu = _min_acu(resources)
    pause = [c.get("ServerlessV2ScalingConfiguration", {}).get("SecondsUntilAutoPause")
             for c in _of_type(resources, "AWS::RDS::DBCluster")]
    why = (f"min {min_acu:g} ACU, pauses after {pause[0]} s idle (storage still billed)" if min_acu == 0 and pause[0]
           else f"min {min_acu:g} ACU, never pauses")
    return AlwaysOn("Aurora Serverless v2 instance", len(instances), why,
                    round(len(instances) * min_acu * AURORA_ACU_HOUR * HOURS_PER_MONTH, 2))


def _proxy(resources: Resources) -> AlwaysOn | None:
    count = len(_of_type(resources, "AWS::RDS::DBProxy"))
    if not count:
        return None
    return AlwaysOn("RDS Proxy", count, f"connection pooling; billed for at least {RDS_PROXY_MIN_ACU} ACUs",
                    round(count * max(_min_acu(resources), RDS_PROXY_MIN_ACU) * RDS_PROXY_ACU_HOUR
                          * HOURS_PER_MONTH, 2))


def _secrets(resources: Resources) -> AlwaysOn | None:
    count = len(_of_type(resources, "AWS::SecretsManager::Secret"))
    if not count:
        return None
    return AlwaysOn("Secrets Manager secret", count, "database credentials (owner, application role) and the like",
                    round(count * SECRET_MONTH, 2))


def _alarms(resources: Resources) -> AlwaysOn | None:
    count = len(_of_type(resources, "AWS::CloudWatch::Alarm"))
    if not count:
        return None
    return AlwaysOn("CloudWatch alarm", count, "alerts", round(count * ALARM_MONTH, 2))


_ROWS: tuple[Callable[[Resources], AlwaysOn | None], ...] = (_nat, _endpoints, _aurora, _proxy, _secrets, _alarms)


def always_on(template: Mapping[str, Any]) -> list[AlwaysOn]:
    """The rows for ``template`` (a CloudFormation template as a dict), most expensive first."""
    resources: Resources = template.get("Resources", {})
    rows = [row for make in _ROWS if (row := make(resources)) is not None]
    return sorted(rows, key=lambda r: -r.monthly_usd)


def monthly_floor(rows: list[AlwaysOn]) -> float:
    return round(sum(r.monthly_usd for r in rows), 2)
