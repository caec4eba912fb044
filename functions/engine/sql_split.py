"""Split a SQL script into statements the way Postgres' lexer sees them, for ``-- flux:no-transaction`` files.

Postgres runs a multi-statement simple query as one implicit transaction, so a file
of several ``CREATE INDEX CONCURRENTLY`` statements must be sent one statement at a
time. A ``;`` ends a statement only outside of:

* string constants ``'...'`` (``''`` escapes a quote; after ``E`` a backslash escapes too),
* quoted identifiers ``"..."`` (``""`` escapes),
* dollar-quoted strings ``$tag$...$tag$`` (the tag is empty or an identifier; ``$1`` is a parameter),
* ``-- line`` comments and ``/* block */`` comments, which nest in Postgres.

Not understood: SQL-standard function bodies (``BEGIN ATOMIC ... END``), whose inner
semicolons would split the statement; put such a function in a transactional file.
Pure: text in, statements out, each with the offset where it starts in the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$")
_IDENTIFIER_CHAR = re.compile(r"[A-Za-z0-9_$\x80-\uffff]")


@dataclass(frozen=True, slots=True)
class SqlStatement:
    text: str
    offset: int   # where ``text`` starts in the script (for line numbers in error messages)


class UnterminatedSql(ValueError):
    """A quote, dollar quote or block comment is never closed; ``offset`` is where it opens."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def split_statements(script: str) -> list[SqlStatement]:
    """The script's statements without their ``;``; statements of only whitespace and comments are left out."""
    statements: list[SqlStatement] = []
    start = 0
    i = 0
    meaningful = False   # the current statement holds something other than whitespace and comments
    length = len(script)
    while i < length:
        char = script[i]
        if char == ";":
            if meaningful:
                statements.append(_statement(script, start, i))
            start, meaningful = i + 1, False
            i += 1
        elif char == "-" and script.startswith("--", i):
            end = script.find("\n", i)
            i = length if end < 0 else end + 1
        elif char == "/" and script.startswith("/*", i):
            i = _block_comment_end(script, i)
        elif char == "'":
            meaningful = True
            i = _quoted_end(script, i, "'", backslash=_is_escape_string(script, i))
        elif char == '"':
            meaningful = True
            i = _quoted_end(script, i, '"', backslash=False)
        elif char == "$" and (i == 0 or not _IDENTIFIER_CHAR.match(script[i - 1])):
            meaningful = True
            match = _DOLLAR_TAG.match(script, i)
            if match is None:
                i += 1
                continue
            close = script.find(match.group(0), match.end())
            if close < 0:
                raise UnterminatedSql(f"dollar quote {match.group(0)} is never closed", i)
            i = close + len(match.group(0))
        else:
            if not char.isspace():
                meaningful = True
            i += 1
    if meaningful:
        statements.append(_statement(script, start, length))
    return statements


def _statement(script: str, start: int, end: int) -> SqlStatement:
    raw = script[start:end]
    stripped = raw.lstrip()
    return SqlStatement(stripped.rstrip(), start + len(raw) - len(stripped))


def _is_escape_string(script: str, quote: int) -> bool:
    """``E'...'``: the quote follows a lone E (not the end of a longer word such as ``TYPE'``)."""
    if quote == 0 or script[quote - 1] not in "eE":
        return False
    return quote == 1 or not _IDENTIFIER_CHAR.match(script[quote - 2])


def _quoted_end(script: str, i: int, quote: str, *, backslash: bool) -> int:
    j = i + 1
    while j < len(script):
        char = script[j]
        if backslash and char == "\\":
            j += 2
            continue
        if char == quote:
            if script.startswith(quote, j + 1):   # doubled: an escaped quote
                j += 2
                continue
            return j + 1
        j += 1
    raise UnterminatedSql(f"{quote} is never closed", i)


def _block_comment_end(script: str, i: int) -> int:
    depth = 0
    j = i
    while j < len(script):
        if script.startswith("/*", j):
            depth += 1
            j += 2
        elif script.startswith("*/", j):
            depth -= 1
            j += 2
            if depth == 0:
                return j
        else:
            j += 1
    raise UnterminatedSql("block comment is never closed", i)
