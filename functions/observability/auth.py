"""The admin-key check in front of the hosted observability API.

The API takes any ``authorize(event) -> bool`` callable; this module builds the
one the hosted Lambda uses from the gateway's API key store: the request must
carry an active key (``x-api-key`` or ``Authorization: Bearer flx_...``) whose
scope is ``admin``. Invoke-only keys may call functions but not read traces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class KeyAuthenticator(Protocol):
    def authenticate(self, presented: str) -> Any:
        """The active key record (with a ``scope``) for ``presented``, or None."""


def admin_key_authorizer(keys: KeyAuthenticator) -> Callable[[dict[str, Any]], bool]:
    from functions.gateway.keys import ADMIN_SCOPES, presented_key

    def authorize(event: dict[str, Any]) -> bool:
        presented = presented_key(event.get("headers") or {})
        if not presented:
            return False
        record = keys.authenticate(presented)
        return record is not None and getattr(record, "scope", None) in ADMIN_SCOPES

    return authorize
