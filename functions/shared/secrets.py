"""The secrets port that ``ctx.secrets.get`` reads and ``flux secrets`` writes.

Adapters: SQLite under ``.flux/`` locally (functions/runtime/local_secrets.py),
Secrets Manager in AWS. Values never reach spans or logs: the runtime redacts
any value it handed to user code from that request's log lines.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

from functions.shared.errors import FluxError

SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")


class SecretsError(FluxError):
    status, code = 400, "invalid_secret"


@dataclass(frozen=True, slots=True)
class SecretInfo:
    name: str
    updated_at: float


def check_name(name: str) -> str:
    if not SECRET_NAME.match(name):
        raise SecretsError(f"secret name {name!r} must be letters, digits, '_', '.', '-' (max 128)")
    return name


class SecretsStore(ABC):
    @abstractmethod
    def get(self, name: str) -> str | None: ...

    @abstractmethod
    def set(self, name: str, value: str) -> None: ...

    @abstractmethod
    def delete(self, name: str) -> bool: ...

    @abstractmethod
    def list(self) -> list[SecretInfo]: ...
