"""Stage profiles: what a stage keeps running (and paying for) while nobody uses it.

A stage's profile comes from flux.json ``stages.<name>.profile``, else from its name
(``prod`` for the stage named prod, ``dev`` for any other). Two profiles, because
the trade-off is one question: is this stage disposable?

* ``dev`` — a stage a small team can leave running: Aurora Serverless v2 scales to
  0 ACU and pauses after :data:`AUTO_PAUSE_S` idle (the first query after a pause
  waits for it to resume, about 15 s); no RDS Proxy unless ``database.proxy`` is
  true (the runtime then connects to the cluster endpoint, TLS required); VPC flow
  logs of rejected traffic only, kept for the project's retention and deleted with
  the stack; point-in-time recovery only on the tables that hold user state (API
  keys, jobs), not on spans and rate-limit buckets, which are rebuilt by use.
* ``prod`` — the durable choices: RDS Proxy, PITR on every table, flow logs of all
  traffic kept two years, data retained when the stack is deleted.

Both: Secrets Manager and SQS through interface endpoints and DynamoDB through a
gateway endpoint, so a cold start never waits on a NAT gateway; a NAT gateway only
when a function declares ``allow_net`` hosts (one for dev; one per AZ for prod, so
an AZ outage does not cut the others' egress).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from functions.shared.manifest import ProjectConfig

ProfileName = Literal["dev", "prod"]
AUTO_PAUSE_S = 300                 # dev: Aurora pauses after this long without connections
DEV_MIN_ACU, PROD_MIN_ACU = 0.0, 0.5
PROD_LOG_RETENTION_DAYS = 731      # prod flow logs and Aurora logs: two years, as an audit trail
VPC_AZS = 2


@dataclass(frozen=True, slots=True)
class StageProfile:
    name: ProfileName
    proxy: bool                    # an RDS Proxy in front of a provisioned cluster
    min_acu: float
    auto_pause_s: int | None       # None: never pauses
    flow_log_traffic: Literal["REJECT", "ALL"]
    log_retention_days: int        # VPC flow logs and the Aurora log export
    retain: bool                   # tables, secrets, logs and the cluster outlive `flux destroy`
    pitr_everywhere: bool          # False: PITR only on the tables that hold user state
    nat_gateways: int              # 0 unless a function declares allow_net hosts

    @property
    def is_prod(self) -> bool:
        return self.name == "prod"


def stage_profile(config: ProjectConfig, stage: str, *, needs_internet: bool, retention_days: int) -> StageProfile:
    """The profile of ``stage``: its choices from flux.json, its defaults from its name."""
    name = config.stage_profile(stage)
    wanted_proxy = config.database.proxy
    if name == "prod":
        return StageProfile(name, proxy=True if wanted_proxy is None else wanted_proxy, min_acu=PROD_MIN_ACU,
                            auto_pause_s=None, flow_log_traffic="ALL", log_retention_days=PROD_LOG_RETENTION_DAYS,
                            retain=True, pitr_everywhere=True, nat_gateways=VPC_AZS if needs_internet else 0)
    return StageProfile(name, proxy=bool(wanted_proxy), min_acu=DEV_MIN_ACU, auto_pause_s=AUTO_PAUSE_S,
                        flow_log_traffic="REJECT", log_retention_days=retention_days, retain=False,
                        pitr_everywhere=False, nat_gateways=1 if needs_internet else 0)
