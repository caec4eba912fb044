"""The frames a worker's bootstrap sends the host, validated field by field before anything uses them.

Frames arrive on a channel user code cannot reach (see bootstrap.ts), but the host
still trusts nothing it decodes: a frame whose fields have the wrong type or shape
(``ts_us: "x"``, a span without an id, an unknown kind) raises :class:`FrameError`,
which fails the invocation in progress with a clear message instead of killing the
reader. Models are strict (no ``"1"`` for ``1``, no ``true`` for an integer).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

_Int = Annotated[int, Field(strict=True, ge=0, le=2**63 - 1)]
_Id = Annotated[int, Field(strict=True, ge=0, le=2**53)]
_SpanId = Annotated[str, Field(strict=True, pattern=r"^[0-9a-f]{16}$")]


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class ReadyFrame(_Frame):
    t: Literal["ready"]
    error: dict[str, Any] | None = None


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]{1,256}$")
# No CR, LF or NUL: a value must not be able to start another header line.
_HeaderValue = Annotated[str, Field(strict=True, pattern=r"^[^\r\n\x00]*$", max_length=16 * 1024)]


class ResponseBody(_Frame):
    """A Web ``Response`` the handler returned: status, header pairs (repeats kept), body text or base64."""

    status: Annotated[int, Field(strict=True, ge=200, le=599)]
    # JSON has no tuples: each pair is a two-item array [name, value].
    headers: list[Annotated[list[_HeaderValue], Field(min_length=2, max_length=2)]] = \
        Field(default_factory=list, max_length=512)
    body: str = ""
    base64: bool = False

    @field_validator("headers")
    @classmethod
    def _names(cls, value: list[list[str]]) -> list[list[str]]:
        for name, _ in value:
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name[:64]!r} is not a header name")
        return value


class DoneFrame(_Frame):
    t: Literal["done"]
    id: _Id
    ok: bool
    value: Any = None
    response: ResponseBody | None = None
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
