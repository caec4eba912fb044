"""Lambda entry of a function's HTTP route: API Gateway HTTP API (payload 2.0) event in, proxy result out.

Cold imports stay lean: boto3, psycopg and the engine load only when the
environment asks for them (see :mod:`functions.aws.runtime_state`). The state is
built here, at import, which Lambda runs in its INIT phase; Deno starts only when a
request is allowed through to the function, so a denied request is answered by the
pipeline without one. The request's spans are written after the response is posted,
by the internal extension :func:`runtime_state.prepare` registered
(:mod:`functions.aws.extension`), before Lambda may freeze the environment.
"""

from __future__ import annotations

from typing import Any

from functions.aws import runtime_state

runtime_state.prepare("http")


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    state = None
    try:
        state = runtime_state.state("http")
        return state.run(state.pipeline.handle(event))
    finally:
        runtime_state.finish(state, context)  # spans: written after the response, before any freeze
