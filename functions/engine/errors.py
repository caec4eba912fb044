"""Engine errors. Query-level failures reuse the shared classes so every layer maps them alike.

``InvalidQuery`` (400), ``PermissionDenied`` (403), ``DatabaseUnavailable`` (503) and ``FunctionTimeout``
(504) come from :mod:`functions.shared.errors` because the runtime sends them back to user code by code; the
classes here cover what only the engine can fail at (migrations, the embedded server, an
unexpected database error) under one root.
"""

from __future__ import annotations

from functions.shared.errors import DatabaseUnavailable, FluxError, FunctionTimeout, InvalidQuery, PermissionDenied

__all__ = ["DatabaseUnavailable", "EmbeddedPostgresError", "EngineError", "FunctionTimeout", "InvalidQuery",
           "MigrationError", "PermissionDenied"]


class EngineError(FluxError):
    """Root of the engine's own errors: a database failure that is neither the caller's fault nor an outage."""

    status, code = 500, "database_error"


class MigrationError(EngineError):
    """A migration file failed or was edited after it was applied; the message names the file."""

    status, code = 500, "migration_failed"


class EmbeddedPostgresError(EngineError):
    """The embedded Postgres server could not be initialised, started or stopped."""

    status, code = 500, "embedded_postgres_failed"
