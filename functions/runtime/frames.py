"""The frames a worker's bootstrap sends the host, validated field by field before anything uses them.

Frames arrive on a channel user code cannot reach (see bootstrap.ts), but the host
still trusts nothing it decodes: a frame whose fields have the wrong type or shape
(``ts_us: "x"``, a span without an id, an unknown kind) raises :class:`FrameError`,
which fails the invocation in progress with a clear message instead of killing the
reader. Models are strict (no ``"1"`` for ``1``, no ``true`` for an integer).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

_Int = Annotated[int, Field(strict=True, ge=0, le=2**63 - 1)]
_Id = Annotated[int, Field(strict=True, ge=0, le=2**53)]
_SpanId = Annotated[str, Field(strict=True, pattern=r"^[0-9a-f]{16}$")]


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class ReadyFrame(_Frame):
    t: Literal["ready"]
    error: dict[str, Any] | None = None


class DoneFrame(_Frame):
    t: Literal["done"]
    id: _Id
    ok: bool
    value: Any = None
    error: dict[str, Any] | None = None
    pending: _Int = 0


class IdleFrame(_Frame):
    t: Literal["idle"]
    id: _Id


class LogFrame(_Frame):
    t: Literal["log"]
    inv: _Id
    span: Annotated[str, Field(strict=True, max_length=64)] = ""
    ts_us: _Int
    level: Annotated[str, Field(strict=True, max_length=16)]
    message: str
    fields: dict[str, Any] = Field(default_factory=dict)


class SpanBody(_Frame):
    span_id: _SpanId
    parent_span_id: _SpanId | None = None
    kind: Literal["custom", "http"]
    name: str
    start_us: _Int
    duration_us: _Int
    status: Literal["ok", "error"]
    attrs: dict[str, Any] = Field(default_factory=dict)


class SpanFrame(_Frame):
    t: Literal["span"]
    inv: _Id
    span: SpanBody


class CallFrame(_Frame):
    t: Literal["call"]
    id: _Id
    inv: _Id
    span: Annotated[str, Field(strict=True, max_length=64)] = ""
    ts_us: _Int | None = None
    method: Annotated[str, Field(strict=True, max_length=64)]
    params: Any = None


Frame = ReadyFrame | DoneFrame | IdleFrame | LogFrame | SpanFrame | CallFrame
_ADAPTER: TypeAdapter[Frame] = TypeAdapter(Annotated[Frame, Field(discriminator="t")])


class FrameError(ValueError):
    """A frame that does not have the protocol's shape."""


def parse_frame(data: Any) -> Frame:
    """The typed frame for a decoded JSON value, or :class:`FrameError` saying what is wrong."""
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "frame"
        kind = data.get("t") if isinstance(data, dict) else None
        raise FrameError(f"malformed {kind or 'unknown'} frame from the worker: {where}: {first['msg']}") from None
