"""The frames a worker's bootstrap sends the host, validated field by field before anything uses them.

Frames arrive on a channel user code cannot reach (see bootstrap.ts), but the host
still trusts nothing it decodes: a frame whose fields have the wrong type or shape
(``ts_us: "x"``, a span without an id, an unknown kind) raises :class:`FrameError`,
which fails the invocation in progress with a clear message instead of killing the
reader. Conversion is strict (no ``"1"`` for ``1``, no ``true`` for an integer);
unknown keys are ignored.

The models are msgspec structs, not pydantic: this module is on every runtime
Lambda's import path, and msgspec costs ~6 ms of INIT where pydantic costs ~60
(bench/PROFILE.md §7). Patterns end in ``\\Z``, not ``$``: msgspec
matches with :func:`re.search`, where ``$`` also matches before a final newline.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

_Int = Annotated[int, Meta(ge=0, le=2**63 - 1)]
_Id = Annotated[int, Meta(ge=0, le=2**53)]
_SpanId = Annotated[str, Meta(pattern=r"\A[0-9a-f]{16}\Z")]
# Strings the host copies into span ids, log levels, method names or headers: no lone surrogates (the old
# pydantic models refused them in constrained strings; they cannot be encoded into SQLite, DynamoDB or HTTP).
_NO_SURROGATE = r"\ud800-\udfff"
_NO_SURROGATES = rf"\A[^{_NO_SURROGATE}]*\Z"
_Short = Annotated[str, Meta(pattern=_NO_SURROGATES, max_length=64)]

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]{1,256}")
# No CR, LF or NUL: a value must not be able to start another header line.
_HeaderValue = Annotated[str, Meta(pattern=rf"\A[^\r\n\x00{_NO_SURROGATE}]*\Z", max_length=16 * 1024)]
_HeaderPair = Annotated[list[_HeaderValue], Meta(min_length=2, max_length=2)]  # JSON has no tuples: [name, value]


class _Frame(Struct, frozen=True, tag_field="t"):
    """A frame; its ``t`` (the tag) says which."""


class ReadyFrame(_Frame, tag="ready"):
    error: dict[str, Any] | None = None


class ResponseBody(Struct, frozen=True):
    """A Web ``Response`` the handler returned: status, header pairs (repeats kept), body text or base64."""

    status: Annotated[int, Meta(ge=200, le=599)]
    headers: Annotated[list[_HeaderPair], Meta(max_length=512)] = []
    body: str = ""
    base64: bool = False

    def __post_init__(self) -> None:
        for name, _ in self.headers:
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name[:64]!r} is not a header name")


class DoneFrame(_Frame, tag="done"):
    id: _Id
    ok: bool
    value: Any = None
    response: ResponseBody | None = None
    error: dict[str, Any] | None = None
    pending: _Int = 0


class IdleFrame(_Frame, tag="idle"):
    id: _Id


class LogFrame(_Frame, tag="log"):
    inv: _Id
    ts_us: _Int
    level: Annotated[str, Meta(pattern=_NO_SURROGATES, max_length=16)]
    message: str
    span: _Short = ""
    fields: dict[str, Any] = {}


class SpanBody(Struct, frozen=True):
    span_id: _SpanId
    kind: Literal["custom", "http"]
    name: str
    start_us: _Int
    duration_us: _Int
    status: Literal["ok", "error"]
    parent_span_id: _SpanId | None = None
    attrs: dict[str, Any] = {}


class SpanFrame(_Frame, tag="span"):
    inv: _Id
    span: SpanBody


class CallFrame(_Frame, tag="call"):
    id: _Id
    inv: _Id
    method: _Short
    span: _Short = ""
    ts_us: _Int | None = None
    params: Any = None


Frame = ReadyFrame | DoneFrame | IdleFrame | LogFrame | SpanFrame | CallFrame


class FrameError(ValueError):
    """A frame that does not have the protocol's shape; ``data`` is the decoded JSON value, if it was JSON."""

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.data = data


class FrameNotJson(FrameError):
    """A line on the channel that is not JSON (or not UTF-8)."""


# Decoding and validating in one pass costs ~0.1-0.2 µs a frame, against ~1 µs for ``json.loads`` and
# another 1 µs to validate what it returned; the gateway decodes every log, span, call and result this way.
_DECODER = msgspec.json.Decoder(Frame)


def decode_frame(line: bytes) -> Frame:
    """The typed frame a line of the channel holds, or :class:`FrameError` saying what is wrong.

    A value nested too deeply for the decoder raises :class:`RecursionError`, as ``json.loads`` does.
    """
    try:
        return _DECODER.decode(line)
    except msgspec.ValidationError as exc:
        raise _malformed(_where(str(exc)), _json_or_none(line)) from None
    except msgspec.DecodeError:
        return _decode_as_python_does(line)


def _decode_as_python_does(line: bytes) -> Frame:
    """The frames msgspec's decoder refuses and ``json.loads`` reads, read as ``json.loads`` does.

    A JavaScript string may hold a lone surrogate, which ``JSON.stringify`` writes as ``\\ud800``: a
    log line or a return value with one is a valid frame, not a protocol violation.
    """
    try:
        data = json.loads(line)
    except ValueError:  # not JSON, or not UTF-8
        raise FrameNotJson("a frame from the worker is not JSON") from None
    try:
        return msgspec.convert(data, Frame)  # type: ignore[arg-type]  # a union of tagged structs
    except msgspec.ValidationError as exc:
        raise _malformed(_where(str(exc)), data) from None
    except UnicodeError:  # msgspec encodes a string to match or describe it; a lone surrogate cannot be
        raise _malformed("a lone surrogate in a field that does not allow one", data) from None


def _malformed(detail: str, data: Any) -> FrameError:
    kind = data.get("t") if isinstance(data, dict) else None
    return FrameError(f"malformed {kind if isinstance(kind, str) else 'unknown'} frame from the worker: {detail}",
                      data)


def _json_or_none(line: bytes) -> Any:
    """The line decoded without the schema (only to say whose malformed frame it was).

    A line nested too deeply raises :class:`RecursionError` here too: the worker's too-deep path
    finds its invocation from the line's head, which a malformed frame without ``data`` could not.
    """
    try:
        return json.loads(line)
    except ValueError:
        return None


def as_dict(frame: Struct) -> dict[str, Any]:
    """A frame's fields as a plain dict (what the log and span consumers take)."""
    return msgspec.structs.asdict(frame)


def _where(message: str) -> str:
    """msgspec's ``Expected `int`, got `str` - at `$.span.ts_us``` as ``span.ts_us: Expected `int`, got `str```."""
    text, sep, path = message.rpartition(" - at `")
    if not sep:
        return f"frame: {message}"
    path = path.rstrip("`").removeprefix("$").removeprefix(".")
    return f"{path or 'frame'}: {text}"
