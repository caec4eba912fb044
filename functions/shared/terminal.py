"""Text for a terminal: control characters escaped, so nothing Flux prints can drive the terminal.

Request paths, function logs, span names and job errors are chosen by whoever sends
a request or writes a function. Printed raw, ``ESC ] 52 ; c ; ... BEL`` writes the
operator's clipboard (OSC 52), other escapes retitle the window or move the cursor,
and a CR or LF inside a field forges whole lines. Every line Flux writes to a
terminal (``flux dev`` request and job lines, ``flux tail``, ``logs``, ``queue``,
``trace``, ``why``) passes through :func:`escape`: C0 controls, DEL and C1 controls
become readable escapes (``\\x1b``, ``\\n``), everything else stays as it is.
"""

from __future__ import annotations

import re
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape(text: object) -> str:
    """``text`` as one printable line."""
    value = text if isinstance(text, str) else str(text)
    return _CONTROL.sub(_escaped, value)


def escape_tree(value: Any) -> Any:
    """:func:`escape` on every string (keys too) of a JSON-like value, for renderers that print fields.

    Iterative: a trace tree may be nested deeper than Python's recursion limit.
    """
    if not isinstance(value, dict | list | tuple):
        return escape(value) if isinstance(value, str) else value
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(value, root, 0)]
    while stack:
        source, target, key = stack.pop()
        if isinstance(source, dict):
            copy: Any = {}
            for k, v in source.items():
                name = escape(k) if isinstance(k, str) else k
                copy[name] = None
                stack.append((v, copy, name))
        elif isinstance(source, list | tuple):
            copy = [None] * len(source)
            for index, v in enumerate(source):
                stack.append((v, copy, index))
        else:
            copy = escape(source) if isinstance(source, str) else source
        target[key] = copy
    return root[0]
