"""The gateway's two DynamoDB tables, as plain data the CDK and the tests share.

=================  ===============  ==========================================================
table              key              items
=================  ===============  ==========================================================
API keys           ``pk`` (S)       ``key#<sha256>`` (the record) and ``name#<name>`` (pointer);
                                    see :mod:`functions.gateway.keys_dynamodb`. No TTL.
rate limits        ``pk`` (S)       ``<function>|<caller>`` with ``tat`` (N, ns); TTL attribute
                                    ``expires_at``; see :mod:`functions.gateway.ratelimit_dynamodb`.
=================  ===============  ==========================================================

Both are on-demand, with no sort key and no index: every read is a strongly
consistent ``GetItem`` by ``pk``.

IAM the authorizer needs: keys table ``GetItem``, ``UpdateItem`` (last-used);
rate-limit table ``GetItem``, ``PutItem``. ``flux keys --table`` additionally
needs ``PutItem`` + ``TransactWriteItems`` (create), ``Scan`` (list) and
``UpdateItem`` (revoke) on the keys table.
"""

from __future__ import annotations

from typing import Any

PK = "pk"
RATE_LIMIT_TTL_ATTRIBUTE = "expires_at"

KEYS_TABLE: dict[str, Any] = {
    "partition_key": {"name": PK, "type": "S"},
    "billing_mode": "PAY_PER_REQUEST",
    "time_to_live_attribute": None,
}

RATE_LIMIT_TABLE: dict[str, Any] = {
    "partition_key": {"name": PK, "type": "S"},
    "billing_mode": "PAY_PER_REQUEST",
    "time_to_live_attribute": RATE_LIMIT_TTL_ATTRIBUTE,
}


def create_table_kwargs(table_name: str, spec: dict[str, Any]) -> dict[str, Any]:
    key = spec["partition_key"]
    return {
        "TableName": table_name,
        "AttributeDefinitions": [{"AttributeName": key["name"], "AttributeType": key["type"]}],
        "KeySchema": [{"AttributeName": key["name"], "KeyType": "HASH"}],
        "BillingMode": spec["billing_mode"],
    }


def create_table(client: Any, table_name: str, spec: dict[str, Any]) -> None:
    """Create one of the tables (if missing), wait for it, and switch on its TTL."""
    try:
        client.create_table(**create_table_kwargs(table_name, spec))
    except client.exceptions.ResourceInUseException:
        return
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    if spec["time_to_live_attribute"]:
        client.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": spec["time_to_live_attribute"]},
        )
