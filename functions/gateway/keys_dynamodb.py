"""DynamoDB adapter of :class:`ApiKeyStore` (the ``KEYS_TABLE`` of the AWS stack).

Table: partition key ``pk`` (string), no sort key. Each key is two items
written in one transaction:

* ``pk = "key#<sha256>"`` — the record the authorizer reads with one strongly
  consistent ``GetItem`` (so a revoke takes effect on the next request);
* ``pk = "name#<name>"`` — a pointer to the hash whose conditional put makes
  names unique, and which ``revoke NAME`` follows.

A GSI on name would avoid the second item but GSIs are only eventually
consistent, which would let a just-revoked key through for a moment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.gateway.errors import KeyNameTaken, KeyStoreError
from functions.gateway.keys import ApiKey, ApiKeyStore
from functions.shared.aws_errors import describe, error_code

_KEY = "key#"
_NAME = "name#"


class DynamoApiKeyStore(ApiKeyStore):
    def __init__(self, table: str, client: Any | None = None, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        if client is None:
            from functions.shared.aws_clients import client as aws_client

            client = aws_client("dynamodb")
        self.table = table
        self.client = client

    def insert(self, record: ApiKey) -> None:
        key_item: dict[str, Any] = {
            "pk": {"S": _KEY + record.key_hash},
            "type": {"S": "key"},
            "name": {"S": record.name},
            "prefix": {"S": record.prefix},
            "key_hash": {"S": record.key_hash},
            "scope": {"S": record.scope},
            "created_at": {"N": repr(record.created_at)},
            "revoked": {"BOOL": record.revoked},
        }
        if record.last_used_at is not None:
            key_item["last_used_at"] = {"N": repr(record.last_used_at)}
        name_item = {"pk": {"S": _NAME + record.name}, "type": {"S": "name"}, "key_hash": {"S": record.key_hash}}
        try:
            self.client.transact_write_items(TransactItems=[
                {"Put": {"TableName": self.table, "Item": name_item,
                         "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Put": {"TableName": self.table, "Item": key_item,
                         "ConditionExpression": "attribute_not_exists(pk)"}},
            ])
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or []
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                raise KeyNameTaken(record.name) from None
            raise KeyStoreError(f"cannot store API key {record.name!r}: {describe(exc)}") from exc
        except BotoCoreError as exc:
            raise KeyStoreError(f"cannot store API key {record.name!r}: {exc}") from exc

    def get_by_hash(self, key_hash: str) -> ApiKey | None:
        item = self._get(_KEY + key_hash)
        return _record(item) if item else None

    def get_by_name(self, name: str) -> ApiKey | None:
        pointer = self._get(_NAME + name)
        return self.get_by_hash(pointer["key_hash"]["S"]) if pointer else None

    def list_all(self) -> list[ApiKey]:
        records: list[ApiKey] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table, "ConsistentRead": True,
            "FilterExpression": "#t = :key", "ExpressionAttributeNames": {"#t": "type"},
            "ExpressionAttributeValues": {":key": {"S": "key"}},
        }
        try:
            while True:
                page = self.client.scan(**kwargs)
                records.extend(_record(item) for item in page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    return records
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as exc:
            raise KeyStoreError(f"cannot list API keys: {describe(exc)}") from exc

    def set_revoked(self, name: str) -> bool:
        pointer = self._get(_NAME + name)
        if pointer is None:
            return False
        return self._update(_KEY + pointer["key_hash"]["S"], "SET revoked = :t", {":t": {"BOOL": True}},
                            what=f"revoke API key {name!r}")

    def touch(self, record: ApiKey, used_at: float) -> None:
        self._update(_KEY + record.key_hash, "SET last_used_at = :ts", {":ts": {"N": repr(used_at)}},
                     what=f"record use of API key {record.name!r}")

    def _get(self, pk: str) -> dict[str, Any] | None:
        try:
            response = self.client.get_item(TableName=self.table, Key={"pk": {"S": pk}}, ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise KeyStoreError(f"cannot read API keys: {describe(exc)}") from exc
        return response.get("Item")

    def _update(self, pk: str, expression: str, values: dict[str, Any], *, what: str) -> bool:
        """An update that never creates an item: False when the item does not exist."""
        try:
            self.client.update_item(TableName=self.table, Key={"pk": {"S": pk}}, UpdateExpression=expression,
                                    ConditionExpression="attribute_exists(pk)", ExpressionAttributeValues=values)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise KeyStoreError(f"cannot {what}: {describe(exc)}") from exc
        except BotoCoreError as exc:
            raise KeyStoreError(f"cannot {what}: {exc}") from exc
        return True


def _record(item: dict[str, Any]) -> ApiKey:
    last_used = item.get("last_used_at")
    return ApiKey(
        name=item["name"]["S"], prefix=item["prefix"]["S"], key_hash=item["key_hash"]["S"],
        scope=item["scope"]["S"], created_at=float(item["created_at"]["N"]),
        last_used_at=float(last_used["N"]) if last_used else None, revoked=bool(item["revoked"]["BOOL"]),
    )
