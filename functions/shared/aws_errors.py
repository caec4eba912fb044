"""Reading botocore errors the same way in every AWS adapter."""

from __future__ import annotations

from botocore.exceptions import ClientError


def error_code(exc: ClientError) -> str:
    """The service's error code, e.g. ``ConditionalCheckFailedException``."""
    return str(exc.response.get("Error", {}).get("Code") or "")


def describe(exc: Exception) -> str:
    """``Code: Message`` for a service error, the text of anything else (for error messages and logs)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}"
    return str(exc)
