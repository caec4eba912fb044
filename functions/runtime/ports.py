"""The services a Deno worker reaches through ``ctx``, as the runtime sees them.

The worker's RPC calls (``ctx.db.query``, ``ctx.db.batch``, ``ctx.queue.push``,
``ctx.function.invoke``) arrive in the Python host, which dispatches them to
these ports with a :class:`CallContext` whose ``parent_span_id`` is the span
that was current in user code. Implementations raise :class:`FluxError`
subclasses; the host sends code, status and message back to the worker, where
they become a thrown ``FluxError`` that, uncaught, sets the HTTP response.
"""

from __future__ import annotations

from typing import Any, Protocol

from functions.shared.context import CallContext


class DbService(Protocol):
    async def query(self, query: Any, call: CallContext) -> dict[str, Any]:
        """Run one structured query. Returns ``{"rows": [...], "truncated": bool}``."""

    async def batch(self, queries: Any, call: CallContext) -> list[dict[str, Any]]:
        """Run several queries in one transaction; each result as in :meth:`query`."""


class QueueService(Protocol):
    async def push(self, function: str, payload: Any, options: dict[str, Any], call: CallContext) -> dict[str, Any]:
        """Enqueue a job for an async function. Returns ``{"job_id": ...}``."""


class Invoker(Protocol):
    async def invoke(self, function: str, payload: Any, call: CallContext, *,
                     span_attrs: dict[str, Any] | None = None) -> Any:
        """Run ``function`` with ``payload`` as a child of ``call.parent_span_id``; return its result.

        Raises a FluxError subclass on failure (FunctionError, FunctionTimeout,
        RuntimeCrashed, or the user's own FluxError).
        """
