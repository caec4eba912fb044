"""Secrets Manager adapter of the secrets port: what runtime Lambdas read and `flux secrets --stage` writes.

Secrets are named ``flux/<project>/<stage>/<NAME>``, so one account can hold
several projects and stages and a runtime role can be granted exactly its own
prefix. Deletion skips the recovery window: a deleted secret name is free again
at once, which is what `flux secrets delete` followed by `set` expects.
"""

from __future__ import annotations

from typing import Any

from functions.shared.errors import FluxError
from functions.shared.secrets import SecretInfo, SecretsStore, check_name


class SecretUnavailable(FluxError):
    """Secrets Manager could not be read (throttled, no permission, unreachable): a 503, not a missing secret."""

    status, code = 503, "secret_unavailable"


class SecretsManagerStore(SecretsStore):
    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"

    @classmethod
    def for_stage(cls, project: str, stage: str, client: Any | None = None) -> SecretsManagerStore:
        if client is None:
            from functions.shared.aws_clients import client as aws_client

            client = aws_client("secretsmanager")
        return cls(client, f"flux/{project}/{stage}/")

    def _id(self, name: str) -> str:
        return self.prefix + check_name(name)

    def get(self, name: str) -> str | None:
        # botocore is imported on the first read, not in INIT: ~7 ms of every runtime Lambda's cold start,
        # for functions that never call ctx.secrets.get (the client itself is created lazily too).
        from botocore.exceptions import BotoCoreError, ClientError

        from functions.shared.aws_errors import error_code

        try:
            response = self.client.get_secret_value(SecretId=self._id(name))
        except ClientError as exc:
            code = error_code(exc)
            if code == "ResourceNotFoundException":
                return None
            raise SecretUnavailable(f"cannot read secret {name!r}: {code}") from exc
        except BotoCoreError as exc:
            raise SecretUnavailable(f"cannot read secret {name!r}: {exc}") from exc
        value = response.get("SecretString")
        return value if isinstance(value, str) else None

    def set(self, name: str, value: str) -> None:
        secret_id = self._id(name)
        try:
            self.client.put_secret_value(SecretId=secret_id, SecretString=value)
        except self.client.exceptions.ResourceNotFoundException:
            self.client.create_secret(Name=secret_id, SecretString=value,
                                      Tags=[{"Key": "flux:managed", "Value": "true"}])

    def delete(self, name: str) -> bool:
        # A forced delete of a missing secret succeeds silently, so ask first to report "no such secret".
        try:
            self.client.describe_secret(SecretId=self._id(name))
            self.client.delete_secret(SecretId=self._id(name), ForceDeleteWithoutRecovery=True)
        except self.client.exceptions.ResourceNotFoundException:
            return False
        return True

    def list(self) -> list[SecretInfo]:
        items: list[SecretInfo] = []
        paginator = self.client.get_paginator("list_secrets")
        for page in paginator.paginate(Filters=[{"Key": "name", "Values": [self.prefix]}]):
            for secret in page.get("SecretList", []):
                name = str(secret["Name"])
                if not name.startswith(self.prefix):
                    continue
                changed = secret.get("LastChangedDate") or secret.get("CreatedDate")
                items.append(SecretInfo(name[len(self.prefix):], changed.timestamp() if changed else 0.0))
        return sorted(items, key=lambda i: i.name)
