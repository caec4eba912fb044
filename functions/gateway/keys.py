"""API keys: how they are made, stored and checked, and the store port.

A key is ``flx_live_`` + ``secrets.token_urlsafe(32)`` (256 bits of entropy). It
is shown once, at creation; the stores keep only

* ``key_hash`` — SHA-256 of the whole key, hex. A slow password hash (bcrypt,
  argon2) exists to make guessing a *low-entropy* secret expensive; a 256-bit
  random key cannot be guessed either way, so a fast hash loses nothing and lets
  the authorizer check a key in microseconds. The hash is also the lookup key:
  an attacker cannot steer which row a lookup touches, so the index read leaks
  nothing useful through timing, and the final comparison of the stored and the
  computed hash is constant-time (``hmac.compare_digest``) anyway;
* ``prefix`` — the first 12 characters, so ``flux keys list`` can show which key
  is which without holding anything that authenticates;
* name, scope (``invoke`` may call functions; ``admin`` may also call the
  observability API), created_at, last_used_at and revoked.

Names stay reserved after a revoke so that logs and traces that mention a key
name keep meaning one key.

:class:`ApiKeyStore` owns the logic; adapters (SQLite locally, DynamoDB in AWS)
implement a handful of storage primitives and pass the same contract tests.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from functions.gateway.errors import InvalidKeyName, InvalidScope, KeyStoreError

Scope = Literal["invoke", "admin"]
SCOPES: tuple[str, ...] = ("invoke", "admin")
FUNCTION_SCOPES = frozenset({"invoke", "admin"})
ADMIN_SCOPES = frozenset({"admin"})

KEY_PREFIX = "flx_live_"
ENTROPY_BYTES = 32
DISPLAY_PREFIX_LEN = 12
# token_urlsafe(32) is exactly 43 characters of the URL-safe base64 alphabet.
_KEY_SHAPE = re.compile(r"^flx_live_[A-Za-z0-9_-]{43}$")
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

_log = logging.getLogger("flux.gateway.keys")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key: everything except the key itself."""

    name: str
    prefix: str
    key_hash: str
    scope: str
    created_at: float
    last_used_at: float | None = None
    revoked: bool = False

    def public(self) -> dict[str, Any]:
        """What ``flux keys list`` shows: no hash (it is not a secret, but nobody needs it)."""
        data = asdict(self)
        data.pop("key_hash")
        return data


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(ENTROPY_BYTES)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def looks_like_key(value: str) -> bool:
    """Exact shape check, no trimming: a key with surrounding whitespace is not a key."""
    return bool(_KEY_SHAPE.fullmatch(value))


def check_key_name(name: str) -> str:
    if not _KEY_NAME.fullmatch(name):
        raise InvalidKeyName(f"key name {name!r}: use letters, digits, '_', '.', '-' (max 64), starting with "
                             "a letter or digit")
    return name


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise InvalidScope(f"scope {scope!r}: use one of {', '.join(SCOPES)}")
    return scope


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The API key a request carries: ``x-api-key``, else ``Authorization: Bearer flx_...``.

    Header names are matched case-insensitively; values are returned untouched
    so that the shape check, not a trim, decides what counts as a key.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    value = lowered.get("x-api-key")
    if value is not None:
        return value
    authorization = lowered.get("authorization")
    if authorization:
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() == "bearer" and credential.startswith(KEY_PREFIX):
            return credential
    return None


class ApiKeyStore(ABC):
    """Port: create, check, list and revoke keys. Adapters implement the primitives below."""

    #: ``last_used_at`` is written at most this often per key, so a busy key does
    #: not turn every authorised request into a store write.
    touch_interval_s: float = 60.0

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    def create(self, name: str, scope: str = "invoke") -> tuple[ApiKey, str]:
        """Store a new key and return (record, plaintext). The plaintext is never stored."""
        check_key_name(name)
        check_scope(scope)
        key = generate_key()
        record = ApiKey(name=name, prefix=key[:DISPLAY_PREFIX_LEN], key_hash=hash_key(key), scope=scope,
                        created_at=self.clock())
        self.insert(record)
        return record, key

    def lookup(self, presented: str) -> ApiKey | None:
        """The record of ``presented`` (revoked or not), or None if it is not a stored key."""
        if not looks_like_key(presented):
            return None
        computed = hash_key(presented)
        record = self.get_by_hash(computed)
        if record is None or not hmac.compare_digest(record.key_hash, computed):
            return None
        return record

    def authenticate(self, presented: str) -> ApiKey | None:
        """The active key for ``presented`` or None; records the use (at most once per interval)."""
        record = self.lookup(presented)
        if record is None or record.revoked:
            return None
        now = self.clock()
        if record.last_used_at is None or now - record.last_used_at >= self.touch_interval_s:
            try:
                self.touch(record, now)
            except KeyStoreError:
                # The key is valid; failing to note its use must not refuse the request.
                _log.warning("could not record last use of API key %r", record.name)
            record = replace(record, last_used_at=now)
        return record

    def revoke(self, name: str) -> bool:
        """Mark ``name`` revoked; False if there is no such key."""
        return self.set_revoked(name)

    def list(self) -> list[ApiKey]:
        return sorted(self.list_all(), key=lambda k: (k.created_at, k.name))

    # --- storage primitives --------------------------------------------------------------
    @abstractmethod
    def insert(self, record: ApiKey) -> None:
        """Store a new record; :class:`KeyNameTaken` if the name exists."""

    @abstractmethod
    def get_by_hash(self, key_hash: str) -> ApiKey | None: ...

    @abstractmethod
    def get_by_name(self, name: str) -> ApiKey | None: ...

    @abstractmethod
    def list_all(self) -> list[ApiKey]: ...

    @abstractmethod
    def set_revoked(self, name: str) -> bool: ...

    @abstractmethod
    def touch(self, record: ApiKey, used_at: float) -> None: ...
