"""Batch references: a later query in ``ctx.db.batch`` uses values an earlier one returned.

``{"$ref": "0.id"}`` is the ``id`` of the first row query 0 returned, ``{"$ref": "0.2.id"}``
the third row's, and ``{"$ref": "0.*.id"}`` the list of every row's ``id`` (for ``in``,
``not_in`` and array operators). A reference is checked when the batch is compiled, before
any SQL runs: it must point backwards, at a column the earlier query returns. Its value is
bound when the transaction reaches the query, as a parameter with an explicit cast to the
target column's type (the value never enters the SQL text), so the SQL shape of the query
is the same as with a literal value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from functions.engine.values import JsonDocument
from functions.shared.errors import InvalidQuery

_REF = re.compile(r"^(\d{1,3})\.(?:(\d{1,4}|\*)\.)?([A-Za-z_][A-Za-z0-9_]{0,62})$")


@dataclass(frozen=True, slots=True)
class Output:
    """What an earlier query of the batch returns: its table and the names of its result columns."""

    table: str
    columns: frozenset[str]


@dataclass(frozen=True, slots=True)
class Ref:
    """A parameter whose value comes from ``outcomes[query].rows[row][column]`` (``row`` None: every row)."""

    query: int
    row: int | None
    column: str
    where: str
    text: str
    json: bool = False   # the target column is json/jsonb: bind the value as a JSON document


def parse_ref(value: Mapping[str, Any], where: str, earlier: Sequence[Output] | None, *,
              many: bool = False, json: bool = False) -> Ref:
    """Check ``{"$ref": "..."}`` against the batch so far; ``many`` allows the ``N.*.column`` list form."""
    text = value.get("$ref")
    if earlier is None:
        raise InvalidQuery(f"{where}: {{$ref: ...}} only works inside ctx.db.batch([...]), where it names a value "
                           "an earlier query of the batch returned")
    match = _REF.match(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidQuery(f"{where}: $ref {_show(text)} must look like \"0.id\" (first row of batch[0]), "
                           "\"0.2.id\" (its third row) or \"0.*.id\" (every row, for in lists)")
    index, row, column = int(match[1]), match[2], match[3]
    if index >= len(earlier):
        raise InvalidQuery(f"{where}: $ref {text!r} points at batch[{index}], which does not run before this "
                           f"query (references point backwards: batch[0] to batch[{len(earlier) - 1}])"
                           if earlier else f"{where}: $ref {text!r}: the first query of a batch has nothing "
                                           "to refer to")
    output = earlier[index]
    if column not in output.columns:
        shown = ", ".join(sorted(output.columns)) or "no columns (returning: [])"
        raise InvalidQuery(f"{where}: $ref {text!r}: batch[{index}] ({output.table}) returns {shown}, "
                           f"not '{column}'")
    if row == "*" and not many:
        raise InvalidQuery(f"{where}: $ref {text!r} is a list of values; use it with in, not_in or an array "
                           "operator, or pick one row (\"0.id\")")
    return Ref(index, None if row == "*" else int(row or 0), column, where, text, json)


def resolve(params: Sequence[Any], outcomes: Sequence[Any]) -> list[Any]:
    """Replace each :class:`Ref` in ``params`` (also inside lists) by the value it names; 400 if it is missing."""
    if not any(_has_ref(p) for p in params):
        return list(params)
    return [_value(p, outcomes) for p in params]


def _has_ref(value: Any) -> bool:
    return isinstance(value, Ref) or (isinstance(value, list) and any(isinstance(v, Ref) for v in value))


def _value(param: Any, outcomes: Sequence[Any]) -> Any:
    if isinstance(param, list):
        out: list[Any] = []
        for item in param:
            value = _value(item, outcomes)
            if isinstance(item, Ref) and item.row is None:
                out.extend(value)
            else:
                out.append(value)
        return out
    if not isinstance(param, Ref):
        return param
    rows = outcomes[param.query].rows
    if param.row is None:
        return [_bind(row.get(param.column), param) for row in rows]
    if param.row >= len(rows):
        raise InvalidQuery(f"{param.where}: $ref {param.text!r} found no row: batch[{param.query}] returned "
                           f"{len(rows)} row{'s' if len(rows) != 1 else ''}")
    return _bind(rows[param.row].get(param.column), param)


def _bind(value: Any, ref: Ref) -> Any:
    if isinstance(value, JsonDocument):
        value = value.value
        return Jsonb(value) if ref.json else value
    return Jsonb(value) if ref.json and value is not None else value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
