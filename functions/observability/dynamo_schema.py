"""The DynamoDB table that holds spans and logs, as plain data the CDK and the tests share.

One table, two item families, one sparse GSI (DESIGN §4 "DynamoDB keys"):

======================  ==========================================  ===================================
item                    pk / sk                                      gsi1pk / gsi1sk (sparse GSI)
======================  ==========================================  ===================================
span                    ``<trace_id>`` / ``<start_us:020>#<span_id>``  roots only: ``recent#<shard>`` / start_us
log record              ``log#<trace_id>`` / ``<ts_us:020>#<hash>``    ``logs#<shard>`` / ts_us
======================  ==========================================  ===================================

* The sort key is ordered by time and idempotent: a retried write lands on the same key.
* The GSI is sharded (``shard = hash(trace_id) % shards``) so a burst of requests does
  not write one hot partition; readers query every shard and merge.
* ``expires_at`` (epoch seconds) is the TTL attribute, from ``retention_days``.

:data:`SPANS_TABLE` is what the CDK construct reads to declare the table;
:func:`create_spans_table` creates it with boto3 (moto tests, hosted-local setups).
"""

from __future__ import annotations

from typing import Any

PK = "pk"
SK = "sk"
GSI_NAME = "gsi1"
GSI_PK = "gsi1pk"
GSI_SK = "gsi1sk"
TTL_ATTRIBUTE = "expires_at"
DEFAULT_SHARDS = 8
TRACE_SHARD_PREFIX = "recent#"
LOG_SHARD_PREFIX = "logs#"
LOG_PK_PREFIX = "log#"

SPANS_TABLE: dict[str, Any] = {
    "partition_key": {"name": PK, "type": "S"},
    "sort_key": {"name": SK, "type": "S"},
    "billing_mode": "PAY_PER_REQUEST",
    "time_to_live_attribute": TTL_ATTRIBUTE,
    "global_secondary_indexes": [
        {
            "index_name": GSI_NAME,
            "partition_key": {"name": GSI_PK, "type": "S"},
            "sort_key": {"name": GSI_SK, "type": "N"},
            "projection": "ALL",
        }
    ],
}


def create_table_kwargs(table_name: str) -> dict[str, Any]:
    """``CreateTable`` arguments equivalent to :data:`SPANS_TABLE`."""
    attrs = {SPANS_TABLE["partition_key"]["name"]: "S", SPANS_TABLE["sort_key"]["name"]: "S"}
    indexes = []
    for gsi in SPANS_TABLE["global_secondary_indexes"]:
        attrs[gsi["partition_key"]["name"]] = gsi["partition_key"]["type"]
        attrs[gsi["sort_key"]["name"]] = gsi["sort_key"]["type"]
        indexes.append({
            "IndexName": gsi["index_name"],
            "KeySchema": [
                {"AttributeName": gsi["partition_key"]["name"], "KeyType": "HASH"},
                {"AttributeName": gsi["sort_key"]["name"], "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": gsi["projection"]},
        })
    return {
        "TableName": table_name,
        "AttributeDefinitions": [{"AttributeName": k, "AttributeType": v} for k, v in attrs.items()],
        "KeySchema": [
            {"AttributeName": SPANS_TABLE["partition_key"]["name"], "KeyType": "HASH"},
            {"AttributeName": SPANS_TABLE["sort_key"]["name"], "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": indexes,
        "BillingMode": SPANS_TABLE["billing_mode"],
    }


def create_spans_table(client: Any, table_name: str) -> None:
    """Create the table (if missing), wait for it, and switch on TTL."""
    try:
        client.create_table(**create_table_kwargs(table_name))
    except client.exceptions.ResourceInUseException:
        return
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": SPANS_TABLE["time_to_live_attribute"]},
    )
