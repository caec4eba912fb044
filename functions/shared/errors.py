"""The error root of Flux and the one place where errors become HTTP responses.

Every package defines its own root (``EngineError``, ``GatewayError`` ...) as a
subclass of :class:`FluxError`; the HTTP status and the snake_case code live on
the class, so mapping an exception to the standard body
``{"error", "message", "request_id"}`` is a lookup, not a chain of ``except``.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar


class FluxError(Exception):
    """Root of every error Flux reports to a caller."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})
        self.details = dict(details or {})


class InvalidJson(FluxError):
    status, code = 400, "invalid_json"


class ValidationFailed(FluxError):
    status, code = 400, "validation_failed"


class InvalidQuery(FluxError):
    status, code = 400, "invalid_query"


class Unauthorized(FluxError):
    status, code = 401, "unauthorized"


class Forbidden(FluxError):
    status, code = 403, "forbidden"


class PermissionDenied(FluxError):
    """A statement the application role may not run (Postgres SQLSTATE 42501): DML rights only."""

    status, code = 403, "permission_denied"


class RouteNotFound(FluxError):
    status, code = 404, "route_not_found"


class PayloadTooLarge(FluxError):
    status, code = 413, "payload_too_large"


class RateLimited(FluxError):
    status, code = 429, "rate_limited"


class FunctionError(FluxError):
    status, code = 500, "function_error"


class RuntimeCrashed(FluxError):
    status, code = 502, "runtime_crashed"


class DatabaseUnavailable(FluxError):
    status, code = 503, "database_unavailable"


class WorkerRecycled(FluxError):
    """A Deno worker was stopped while this invocation ran in it: a sibling invocation in the same worker ran
    past its timeout (killing the worker is the only way to stop runaway JavaScript). Safe to retry."""

    status, code = 503, "worker_recycled"


class FunctionTimeout(FluxError):
    status, code = 504, "function_timeout"


class UserError(FluxError):
    """A ``FluxError(status, code, message)`` thrown by user code: status and code are per instance."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status  # type: ignore[misc]
        self.code = code  # type: ignore[misc]


_ERRORS_BY_CODE: dict[str, type[FluxError]] = {
    cls.code: cls
    for cls in (InvalidJson, ValidationFailed, InvalidQuery, Unauthorized, Forbidden, PermissionDenied, RouteNotFound,
                PayloadTooLarge, RateLimited, FunctionError, RuntimeCrashed, DatabaseUnavailable,
                WorkerRecycled, FunctionTimeout)
}


def error_for_code(code: str, message: str, *, headers: dict[str, str] | None = None) -> FluxError:
    """Rebuild a typed error from its code (errors cross process boundaries as code + message)."""
    cls = _ERRORS_BY_CODE.get(code)
    if cls is None:
        return FluxError(message, headers=headers)
    return cls(message, headers=headers)


def error_body(code: str, message: str, request_id: str) -> dict[str, str]:
    return {"error": code, "message": message, "request_id": request_id}


def error_response(err: FluxError, request_id: str) -> dict[str, Any]:
    """Map an error to an API Gateway v2 proxy result with the standard body."""
    headers = {**err.headers, "content-type": "application/json", "x-request-id": request_id}
    return {
        "statusCode": err.status,
        "headers": headers,
        "body": json.dumps(error_body(err.code, err.message, request_id)),
        "isBase64Encoded": False,
    }
