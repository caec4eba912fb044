"""Gateway error root.

Most gateway outcomes are not exceptions at all: the authorizer turns every auth
or rate-limit refusal into a *decision* in its context (see ``authorizer.py``).
These classes cover what is left: a presented credential that fails a check
(raised inside the JWT verifier and caught by the authorizer), the stores
failing, and misuse of the key management commands.
"""

from __future__ import annotations

from functions.shared.errors import FluxError, Unauthorized


class GatewayError(FluxError):
    """Root of errors raised by the gateway package."""


class CredentialRejected(GatewayError, Unauthorized):
    """A key or token failed a check (401 unauthorized).

    ``reason`` says which check, for the operator's log line only: the caller
    always gets the same generic message so a failure never hints which part
    of a credential was wrong.
    """

    def __init__(self, reason: str) -> None:
        super().__init__("missing or invalid credentials")
        self.reason = reason


class KeyStoreError(GatewayError):
    """The API key store could not be read or written (the authorizer fails closed)."""

    status, code = 503, "key_store_unavailable"


class KeyNameTaken(GatewayError):
    status, code = 409, "key_name_taken"

    def __init__(self, name: str) -> None:
        super().__init__(f"an API key named {name!r} already exists (names stay reserved after revoke)")


class InvalidKeyName(GatewayError):
    status, code = 400, "invalid_key_name"


class InvalidScope(GatewayError):
    status, code = 400, "invalid_scope"


class RateLimitStoreError(GatewayError):
    """The rate-limit store failed; the authorizer fails open (see ``ratelimit.py``)."""

    status, code = 503, "rate_limit_store_unavailable"


class JwksUnavailable(GatewayError):
    """The JWKS document could not be fetched or parsed."""

    status, code = 503, "jwks_unavailable"


class AuthUnavailable(GatewayError):
    """The authorizer could not decide (a store outage, a bad bundle, a bug): the request is refused, 503."""

    status, code = 503, "auth_unavailable"
