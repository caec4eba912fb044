"""The structured query model: the raw JSON object from ``ctx.db.query`` as validated frozen models.

Everything user code sends is checked here for *shape* before the compiler checks it
against the live schema: known keys only (per operation), plain identifiers of at most
63 bytes, known operators, JSON values without NUL bytes or non-finite numbers, an `in`
list of at most :data:`MAX_IN_LIST` items, a limit no bigger than the cap. Any failure is
an :class:`InvalidQuery` (400) whose message names the offending part (``filters[0].op``),
raised before a single byte of SQL exists.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from functions.shared.errors import InvalidQuery

OPERATIONS = ("select", "insert", "update", "delete", "upsert")
WRITE_OPERATIONS = frozenset({"insert", "update", "delete", "upsert"})
OPERATORS = ("eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "in", "not_in", "is_null", "not_null")
LIST_OPERATORS = frozenset({"in", "not_in"})
NULL_OPERATORS = frozenset({"is_null", "not_null"})

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

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Operator = Literal["eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "in", "not_in", "is_null", "not_null"]


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


class Filter(_Frozen):
    column: Identifier
    op: Annotated[Operator, BeforeValidator(_lower)]
    value: JsonValue = None

    @field_validator("value", mode="before")
    @classmethod
    def _list_size(cls, value: Any, info: ValidationInfo) -> Any:
        # Checked before the value is walked, so a 100,000-item list is refused without visiting it.
        if info.data.get("op") in LIST_OPERATORS:
            if not isinstance(value, list | tuple):
                raise ValueError(f"'{info.data['op']}' needs a list of values")
            if len(value) > MAX_IN_LIST:
                raise ValueError(f"has {len(value)} items; an '{info.data['op']}' list holds at most {MAX_IN_LIST}")
            return tuple(value)
        return value

    @model_validator(mode="after")
    def _value_fits_operator(self) -> Filter:
        if self.op in NULL_OPERATORS:
            if self.value is not None:
                raise ValueError(f"'{self.op}' takes no value")
        elif self.op not in LIST_OPERATORS:
            if self.value is None:
                raise ValueError(f"'{self.op}' needs a non-null value (use is_null / not_null to match NULL)")
            if self.op in ("like", "ilike") and not isinstance(self.value, str):
                raise ValueError(f"'{self.op}' needs a string pattern")
        return self


class Order(_Frozen):
    column: Identifier
    direction: Annotated[Literal["asc", "desc"], BeforeValidator(_lower)] = "asc"


class Cache(_Frozen):
    ttl_s: Annotated[float, Field(gt=0, le=MAX_CACHE_TTL_S, allow_inf_nan=False, strict=True)]


def _returning(value: Any) -> Any:
    if value == "*":
        return None
    if isinstance(value, bool) or not isinstance(value, list | tuple):
        raise ValueError("must be \"*\" or a list of column names")
    return value


# None means every column (RETURNING *); an empty tuple means no RETURNING clause.
Returning = Annotated[tuple[Identifier, ...] | None, BeforeValidator(_returning)]
Filters = Annotated[tuple[Filter, ...], Field(max_length=MAX_FILTERS)]


class _Query(_Frozen):
    table: Identifier

    @property
    def filters_(self) -> tuple[Filter, ...]:
        return getattr(self, "filters", ())

    @property
    def is_write(self) -> bool:
        return getattr(self, "operation", "select") in WRITE_OPERATIONS


class SelectQuery(_Query):
    operation: Literal["select"]
    columns: Annotated[tuple[Identifier, ...], Field(min_length=1, max_length=MAX_COLUMNS)] | None = None
    filters: Filters = ()
    order: Annotated[tuple[Order, ...], Field(max_length=MAX_ORDER)] = ()
    limit: Annotated[StrictInt, Field(ge=0)] | None = None
    offset: Annotated[StrictInt, Field(ge=0, le=MAX_OFFSET)] = 0
    cache: Cache | None = None


def _rows(value: Any) -> Any:
    return (value,) if isinstance(value, Mapping) else value


class InsertQuery(_Query):
    """``data`` is one object or a list of objects (bulk insert); both are kept as a tuple of rows."""

    operation: Literal["insert"]
    data: Annotated[tuple[Row, ...], BeforeValidator(_rows), Field(min_length=1, max_length=MAX_BULK_ROWS)]
    returning: Returning = None


class UpsertQuery(InsertQuery):
    operation: Literal["upsert"]  # type: ignore[assignment]
    on_conflict: Annotated[tuple[Identifier, ...], Field(min_length=1, max_length=32)] | None = None


class UpdateQuery(_Query):
    operation: Literal["update"]
    data: Annotated[Row, Field(min_length=1)]
    filters: Annotated[Filters, Field(min_length=1)]
    returning: Returning = None


class DeleteQuery(_Query):
    operation: Literal["delete"]
    filters: Annotated[Filters, Field(min_length=1)]
    returning: Returning = None


Query = SelectQuery | InsertQuery | UpsertQuery | UpdateQuery | DeleteQuery
_QUERY = TypeAdapter(Annotated[Query, Field(discriminator="operation")])


def parse_query(raw: Any, *, default_limit: int = DEFAULT_LIMIT, max_limit: int = MAX_LIMIT,
                where: str = "") -> Query:
    """Validate one raw query object. ``where`` prefixes messages (``batch[2].``)."""
    if not isinstance(raw, Mapping):
        raise InvalidQuery(f"{where or 'query'}: must be an object like "
                           "{table: 'orders', operation: 'select', filters: [...]}")
    if isinstance(raw.get("operation"), str):
        raw = {**raw, "operation": raw["operation"].lower()}
    if raw.get("operation") in ("update", "delete") and not raw.get("filters"):
        raise InvalidQuery(f"{where}filters: {raw['operation']} without filters is refused; add a filter "
                           f"(for example {{column: 'id', op: 'eq', value: ...}})")
    try:
        query = _QUERY.validate_python(raw)
    except ValidationError as exc:
        raise InvalidQuery(describe(exc, where, raw)) from None
    if isinstance(query, SelectQuery):
        if query.limit is None:
            query = query.model_copy(update={"limit": default_limit})
        elif query.limit > max_limit:
            raise InvalidQuery(f"{where}limit: {query.limit} is over the maximum of {max_limit} rows; "
                               "page with offset or narrow the filters")
    return query


def parse_batch(raw: Any, *, default_limit: int = DEFAULT_LIMIT, max_limit: int = MAX_LIMIT) -> list[Query]:
    if not isinstance(raw, list | tuple):
        raise InvalidQuery("batch: must be a list of query objects")
    if not raw:
        raise InvalidQuery("batch: is empty")
    if len(raw) > MAX_BATCH:
        raise InvalidQuery(f"batch: {len(raw)} queries; a batch holds at most {MAX_BATCH}")
    return [parse_query(item, default_limit=default_limit, max_limit=max_limit, where=f"batch[{i}].")
            for i, item in enumerate(raw)]


def describe(exc: ValidationError, where: str = "", raw: Mapping[str, Any] | None = None) -> str:
    """Turn pydantic's first error into one sentence naming the offending part of the query."""
    raw = raw or {}
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = list(first["loc"])
    if loc and loc[0] in OPERATIONS:       # discriminated union: the tag leads the location
        loc = loc[1:]
    key_error = bool(loc) and loc[-1] == "[key]"
    if key_error:
        loc = loc[:-2]
    path = _path(loc)
    if path.startswith("data[0]") and isinstance(raw.get("data"), Mapping):
        path = "data" + path.removeprefix("data[0]")
    kind = first["type"]
    given = _show(first.get("input"))
    reason = str(first["msg"]).removeprefix("Value error, ").replace("tuple", "list").replace("Tuple", "List")
    if kind == "extra_forbidden":
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        owner = f" in {parent}" if parent else f" for operation '{raw.get('operation')}'"
        message = f"unknown key '{loc[-1]}'{owner}"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        message = f"operation: must be one of {', '.join(OPERATIONS)}" + (f" (got {given})" if given else "")
    elif kind == "missing":
        message = f"{path}: is required"
    elif key_error:
        message = f"{path}: key {given} {reason}"
    elif kind == "literal_error" and loc and loc[-1] == "op":
        message = f"{path}: unknown operator {given} (expected one of {', '.join(OPERATORS)})"
    elif kind == "literal_error":
        message = f"{path}: {given} is not allowed ({first['ctx']['expected']})"
    elif kind == "value_error":
        message = f"{path}: {given} {reason}" if given else f"{path}: {reason}"
    else:
        message = f"{path}: {reason[0].lower()}{reason[1:]}" + (f" (got {given})" if given else "")
    more = len(errors) - 1
    return f"{where}{message}" + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def _path(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and not part.startswith(("function-", "nullable", "tuple[", "dict[", "list[", "[")):
            out += f".{part}" if out else part
    return out


def _show(value: Any, limit: int = 60) -> str:
    if isinstance(value, Mapping | list | tuple):
        return ""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
