"""Index advice and the schema graph in AWS: the engine Lambda, called from the observability Lambda.

The observability Lambda has no database access (least privilege); the engine
Lambda does, and answers ``{"action": "schema_graph" | "suggest", "spans": [...]}``
with ``{"ok": true, "result": ...}`` or ``{"ok": false, "status", "error", "message"}``
(see :mod:`functions.aws.entry_engine`). This adapter speaks that protocol with an
injected boto3 Lambda client and turns refusals back into typed errors, so the
API answers a database outage with the engine's 503, not a 500.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from functions.observability.errors import ObservabilityError
from functions.shared.errors import UserError
from functions.shared.spans import Span

MAX_SPANS = 5_000  # keeps the invoke payload well under Lambda's 6 MB request limit


class EngineUnavailable(ObservabilityError):
    status, code = 502, "engine_unavailable"


class LambdaAdvice:
    def __init__(self, function_name: str, client: Any, *,
                 recent_spans: Callable[[], Sequence[Span]] | None = None) -> None:
        self.function_name = function_name
        self.client = client
        self.recent_spans = recent_spans

    def schema_graph(self) -> dict[str, Any]:
        spans = list(self.recent_spans()) if self.recent_spans else []
        return self._call("schema_graph", spans)

    def suggest_indexes(self, spans: Sequence[Span]) -> list[dict[str, Any]]:
        db = [s for s in spans if s.kind == "db"]
        if not db:
            return []
        return self._call("suggest", db)

    def _call(self, action: str, spans: Sequence[Span]) -> Any:
        payload = {"action": action, "spans": [s.to_dict() for s in spans[:MAX_SPANS]]}
        try:
            response = self.client.invoke(FunctionName=self.function_name, InvocationType="RequestResponse",
                                          Payload=json.dumps(payload, default=str).encode())
            body = json.loads(response["Payload"].read() or b"null")
        except Exception as exc:  # noqa: BLE001 - any transport failure is "the engine is unavailable"
            raise EngineUnavailable(f"the engine function did not answer: {exc}") from None
        if response.get("FunctionError") or not isinstance(body, dict):
            raise EngineUnavailable(f"the engine function failed: {str(body)[:300]}")
        if not body.get("ok"):
            error = UserError(int(body.get("status") or 500), str(body.get("error") or "engine_error"),
                              str(body.get("message") or "the engine refused the request"))
            error.headers = {str(k): str(v) for k, v in (body.get("headers") or {}).items()}
            raise error
        return body.get("result")
