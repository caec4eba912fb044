"""Errors of the observability layer, rooted in :class:`ObservabilityError` (a FluxError).

Status and code live on the class, so the API maps them with the one shared
``error_response``; bad query parameters reuse the shared ``ValidationFailed``.
"""

from __future__ import annotations

from functions.shared.errors import FluxError


class ObservabilityError(FluxError):
    """Root of the errors this package raises."""

    status, code = 500, "observability_error"


class TraceNotFound(ObservabilityError):
    status, code = 404, "trace_not_found"


class MethodNotAllowed(ObservabilityError):
    status, code = 405, "method_not_allowed"


class SchemaUnavailable(ObservabilityError):
    """No database (engine advice port) is wired in, so there is no schema graph to show."""

    status, code = 503, "schema_unavailable"


class SpanStoreUnavailable(ObservabilityError):
    """The span store kept refusing writes or reads until the deadline passed."""

    status, code = 503, "span_store_unavailable"
