"""Lambda entry of a runtime function: API Gateway HTTP API (payload 2.0) event in, proxy result out.

Cold imports stay lean: boto3, psycopg and the engine load only when the
environment asks for them (see :mod:`functions.runtime.lambda_runtime`).
"""

from __future__ import annotations

from typing import Any

from functions.runtime import lambda_runtime


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    state = lambda_runtime.state()
    try:
        return lambda_runtime.run(state.pipeline.handle(event))
    finally:
        state.sink.flush()
