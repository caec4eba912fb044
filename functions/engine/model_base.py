"""The primitives of the query model: limits, operator names, identifier and JSON value checks.

Shared by :mod:`functions.engine.filters` (conditions and their or/and/not trees) and
:mod:`functions.engine.model` (the queries), which re-exports everything here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr

OPERATIONS = ("select", "insert", "update", "delete", "upsert")
WRITE_OPERATIONS = frozenset({"insert", "update", "delete", "upsert"})
OPERATORS = ("eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "in", "not_in", "is_null", "not_null",
             "contains", "contained_by", "overlaps", "search")
LIST_OPERATORS = frozenset({"in", "not_in"})
NULL_OPERATORS = frozenset({"is_null", "not_null"})
ARRAY_OPERATORS = frozenset({"contains", "contained_by", "overlaps"})
AGGREGATES = ("count", "sum", "avg", "min", "max")
#: Text-search configurations shipped with Postgres: the ``config`` of a ``search`` filter is one of these,
#: rendered as a constant so that an expression index on ``to_tsvector('english', col)`` can serve the query.
SEARCH_CONFIGS = frozenset({"simple", "arabic", "armenian", "basque", "catalan", "danish", "dutch", "english",
                            "finnish", "french", "german", "greek", "hindi", "hungarian", "indonesian", "irish",
                            "italian", "lithuanian", "nepali", "norwegian", "portuguese", "romanian", "russian",
                            "serbian", "spanish", "swedish", "tamil", "turkish", "yiddish"})

MAX_IDENTIFIER_BYTES = 63      # Postgres NAMEDATALEN - 1: a longer name would be silently truncated
MAX_IN_LIST = 1000
MAX_BULK_ROWS = 1000
MAX_COLUMNS = 1600             # Postgres' own per-table limit
MAX_FILTERS = 64
MAX_ORDER = 16
MAX_OFFSET = 1_000_000
MAX_JSON_DEPTH = 32
MAX_CACHE_TTL_S = 86_400
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_BATCH = 100
MAX_FILTER_DEPTH = 8
MAX_EMBEDS = 16
MAX_EMBED_DEPTH = 4
MAX_PATH = 16
MAX_AGGREGATES = 32

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Operator = Literal["eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "in", "not_in", "is_null", "not_null",
                   "contains", "contained_by", "overlaps", "search"]


def check_identifier(value: str) -> str:
    """A plain SQL identifier: no quoting, no schema qualification, nothing Postgres would truncate."""
    if "\x00" in value:
        raise ValueError("contains a NUL byte")
    size = len(value.encode("utf-8"))
    if size > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"is {size} bytes long; identifiers are at most {MAX_IDENTIFIER_BYTES} bytes")
    if not _IDENTIFIER.match(value):
        raise ValueError("is not a plain identifier (letters, digits and '_', not starting with a digit; "
                         "no quotes, dots, spaces or semicolons)")
    return value


def check_json_value(value: Any, depth: int = 0) -> Any:
    """JSON data only: strings without NUL bytes, finite numbers, bounded nesting."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("contains a NUL byte")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("is not a finite number")
        return value
    if depth >= MAX_JSON_DEPTH:
        raise ValueError(f"is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, list | tuple):
        for item in value:
            check_json_value(item, depth + 1)
        return value
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("has a non-string object key")
            if "\x00" in key:
                raise ValueError("has an object key with a NUL byte")
            check_json_value(item, depth + 1)
        return value
    raise ValueError(f"is not a JSON value ({type(value).__name__})")


Identifier = Annotated[StrictStr, AfterValidator(check_identifier)]
JsonValue = Annotated[Any, AfterValidator(check_json_value)]
Row = Annotated[dict[Identifier, JsonValue], Field(max_length=MAX_COLUMNS)]


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def is_ref(value: Any) -> bool:
    """``{"$ref": "0.id"}``: a value taken, inside ``ctx.db.batch``, from a row an earlier query returned.

    Values arrive as plain dicts (JSON), so an exact type check is enough, and much cheaper than an
    ABC check on the hot path of every bound value.
    """
    return type(value) is dict and len(value) == 1 and "$ref" in value
