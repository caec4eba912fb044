"""Runtime error root. Worker-level failures map to the public 502/503/504 errors."""

from __future__ import annotations

from functions.shared.errors import FluxError, Forbidden, FunctionTimeout, RuntimeCrashed, WorkerRecycled


class RuntimeFailure(FluxError):
    """Root of errors raised by the runtime package."""


class WorkerCrashed(RuntimeFailure, RuntimeCrashed):
    """The Deno worker process died during an invocation (502 runtime_crashed)."""


class WorkerStartFailed(RuntimeFailure, RuntimeCrashed):
    """A Deno worker could not be started (502 runtime_crashed)."""


class ProtocolViolation(RuntimeFailure, RuntimeCrashed):
    """The worker sent a frame the bootstrap never sends (502 runtime_crashed); the worker is retired."""


class WorkerTimedOut(RuntimeFailure, FunctionTimeout):
    """The invocation ran past timeout_ms; the worker was killed (504 function_timeout)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"the function did not finish within {int(timeout_s * 1000)} ms (timeout_ms)")


class SiblingTimedOut(RuntimeFailure, WorkerRecycled):
    """Another invocation running in the same worker went over its timeout_ms, and killing the worker (the only
    way to stop runaway JavaScript) ended this one too (503 worker_recycled, ``Retry-After: 1``). Never retried
    silently: this invocation may have had side effects before it was stopped."""

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class FunctionNotFound(RuntimeFailure):
    status, code = 404, "function_not_found"


class InvocationDepthExceeded(RuntimeFailure):
    status, code = 500, "invocation_loop"


class OutputTooLarge(RuntimeFailure):
    """The worker's answer could not be read (too large or nested too deeply): a 500 the user can act on."""

    status, code = 500, "function_error"


class PoolBusy(RuntimeFailure, FunctionTimeout):
    """Every worker of the function stayed busy past its timeout_ms: the request could not start (504)."""


class PushNotDeclared(RuntimeFailure, Forbidden):
    """``ctx.queue.push`` to a function the caller's flux.json ``pushes`` does not list (403): in AWS the caller's
    role may not send to that queue, so the refusal names the declaration to add, locally and in AWS alike."""

    code = "push_not_declared"


class InvokeNotDeclared(RuntimeFailure, Forbidden):
    """``ctx.function.invoke`` of a function the caller's flux.json ``invokes`` does not list (403): the callee runs
    in the caller's Lambda, whose role holds only the secrets and queues of what it declares."""

    code = "invoke_not_declared"
