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


class MemorySecretsStore(SecretsStore):
    """Secrets in a dict: for tests and in-process tools. ``reads`` counts lookups (caching checks)."""

    def __init__(self, values: dict[str, str] | None = None) -> None:
        self.values = dict(values or {})
        self.reads = 0

    def get(self, name: str) -> str | None:
        self.reads += 1
        return self.values.get(name)

    def set(self, name: str, value: str) -> None:
        self.values[check_name(name)] = value

    def delete(self, name: str) -> bool:
        return self.values.pop(name, None) is not None

    def list(self) -> list[SecretInfo]:
        return [SecretInfo(name, 0.0) for name in sorted(self.values)]
