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
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from functions.shared.errors import InvalidQuery

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


PathKey = Annotated[StrictStr, AfterValidator(check_json_value), Field(max_length=255)] | StrictInt


class Filter(_Frozen):
    """One condition ``{column, op, value}``; ``path`` reaches into a json/jsonb column, ``config`` tunes search."""

    column: Identifier
    op: Annotated[Operator, BeforeValidator(_lower)]
    value: JsonValue = None
    path: Annotated[tuple[PathKey, ...], Field(min_length=1, max_length=MAX_PATH)] | None = None
    config: Annotated[StrictStr, BeforeValidator(_lower)] | None = None

    @field_validator("value", mode="before")
    @classmethod
    def _list_size(cls, value: Any, info: ValidationInfo) -> Any:
        # Checked before the value is walked, so a 100,000-item list is refused without visiting it.
        op = info.data.get("op")
        if op in LIST_OPERATORS or op in ARRAY_OPERATORS:
            if is_ref(value) or (op in ARRAY_OPERATORS and isinstance(value, Mapping)):
                return value   # a batch reference, or a JSON document for jsonb containment
            if not isinstance(value, list | tuple):
                raise ValueError(f"'{op}' needs a list of values")
            if len(value) > MAX_IN_LIST:
                raise ValueError(f"has {len(value)} items; an '{op}' list holds at most {MAX_IN_LIST}")
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
            if self.op in ("like", "ilike", "search") and not isinstance(self.value, str) and not is_ref(self.value):
                raise ValueError(f"'{self.op}' needs a string" + (" pattern" if self.op != "search" else ""))
        if self.config is not None:
            if self.op != "search":
                raise ValueError("'config' only applies to the 'search' operator")
            if self.config not in SEARCH_CONFIGS:
                raise ValueError(f"config {self.config!r} is not a built-in text-search configuration "
                                 f"(one of {', '.join(sorted(SEARCH_CONFIGS))})")
        if self.path is not None and self.op in ARRAY_OPERATORS | {"search"}:
            raise ValueError(f"'{self.op}' does not take a 'path' (compare a JSON path with eq, gt, in, ...)")
        return self


_GROUP_TAGS = (("or", "[or]"), ("and", "[and]"), ("not", "[not]"))
_GROUP_KEYS = frozenset(("or", "and", "not"))


def _group_tag(value: Any) -> str:
    """Which kind of filter item this is, by its keys: a tagged union whose tags stay out of error paths."""
    if type(value) is dict or isinstance(value, Mapping):
        if "column" in value:
            return "[filter]"
        for key, tag in _GROUP_TAGS:
            if key in value:
                return tag
    elif isinstance(value, Filter | OrFilter | AndFilter | NotFilter):
        return {Filter: "[filter]", OrFilter: "[or]", AndFilter: "[and]", NotFilter: "[not]"}[type(value)]
    return "[filter]"


class OrFilter(_Frozen):
    """``{or: [item, ...]}``: true when any item is (items are filters or nested groups)."""

    any_of: Annotated[tuple[FilterItem, ...], Field(alias="or", min_length=1, max_length=MAX_FILTERS)]


class AndFilter(_Frozen):
    """``{and: [item, ...]}``: true when every item is (useful inside ``or`` and ``not``)."""

    all_of: Annotated[tuple[FilterItem, ...], Field(alias="and", min_length=1, max_length=MAX_FILTERS)]


class NotFilter(_Frozen):
    """``{not: item}``: true when the item is false (``NOT (...)``)."""

    negated: Annotated[FilterItem, Field(alias="not")]


FilterItem = Annotated[
    Annotated[Filter, Tag("[filter]")] | Annotated[OrFilter, Tag("[or]")] | Annotated[AndFilter, Tag("[and]")]
    | Annotated[NotFilter, Tag("[not]")],
    Discriminator(_group_tag)]
for _model in (OrFilter, AndFilter, NotFilter):
    _model.model_rebuild()


def children(item: Any) -> tuple[Any, ...]:
    if isinstance(item, OrFilter):
        return item.any_of
    if isinstance(item, AndFilter):
        return item.all_of
    if isinstance(item, NotFilter):
        return (item.negated,)
    return ()


def leaves(items: tuple[Any, ...]) -> list[Filter]:
    """Every condition in a filter tree, depth first."""
    out: list[Filter] = []
    for item in items:
        out.extend([item] if isinstance(item, Filter) else leaves(children(item)))
    return out


def conjuncts(items: tuple[Any, ...]) -> list[Filter]:
    """The conditions that must all hold (top level and nested ``and``): what an index can serve."""
    out: list[Filter] = []
    for item in items:
        if isinstance(item, Filter):
            out.append(item)
        elif isinstance(item, AndFilter):
            out.extend(conjuncts(item.all_of))
    return out


def check_filter_tree(raw: Any, where: str) -> None:
    """Bound a raw filter tree's nesting and size before pydantic walks it (a 10,000-deep tree is refused cheaply)."""
    budget = [MAX_FILTERS * 4]

    def walk(item: Any, path: str, depth: int) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise InvalidQuery(f"{where}: more than {MAX_FILTERS * 4} conditions in one filter tree")
        if not isinstance(item, Mapping):
            return
        for key in ("or", "and", "not"):
            if key not in item:
                continue
            if depth + 1 >= MAX_FILTER_DEPTH:
                raise InvalidQuery(f"{path}.{key}: filters are nested deeper than {MAX_FILTER_DEPTH} levels")
            inner = item[key]
            if key == "not":
                walk(inner, f"{path}.not", depth + 1)
            elif isinstance(inner, list | tuple):
                for j, child in enumerate(inner):
                    walk(child, f"{path}.{key}[{j}]", depth + 1)

    if isinstance(raw, list | tuple):
        for i, item in enumerate(raw):
            walk(item, f"{where}[{i}]", 0)


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
Filters = Annotated[tuple[FilterItem, ...], Field(max_length=MAX_FILTERS)]
Columns = Annotated[tuple[Identifier, ...], Field(min_length=1, max_length=MAX_COLUMNS)]
Orders = Annotated[tuple[Order, ...], Field(max_length=MAX_ORDER)]
Limit = Annotated[StrictInt, Field(ge=0)]
Offset = Annotated[StrictInt, Field(ge=0, le=MAX_OFFSET)]


class Embed(_Frozen):
    """Related rows of ``table``, joined along a foreign key (either direction) and nested under the alias.

    ``via`` names the foreign-key column (on either side) or the constraint when two keys link the
    same tables. A to-one relation gives an object (or null), a to-many one a list; ``inner``
    keeps only the parent rows that have a match (after the embed's own filters).
    """

    table: Identifier
    via: Identifier | None = None
    columns: Columns | None = None
    filters: Filters = ()
    order: Orders = ()
    limit: Limit | None = None
    offset: Offset = 0
    inner: StrictBool = False
    embed: Annotated[dict[Identifier, Embed], Field(min_length=1, max_length=MAX_EMBEDS)] | None = None


Embed.model_rebuild()
Embeds = Annotated[dict[Identifier, Embed], Field(min_length=1, max_length=MAX_EMBEDS)]


class Aggregate(_Frozen):
    """``{fn: "sum", column: "total", as: "revenue"}``; ``count`` may omit the column (``count(*)``)."""

    fn: Annotated[Literal["count", "sum", "avg", "min", "max"], BeforeValidator(_lower)]
    column: Identifier | None = None
    distinct: StrictBool = False
    alias: Annotated[Identifier | None, Field(alias="as")] = None

    @model_validator(mode="after")
    def _needs_column(self) -> Aggregate:
        if self.column is None and self.fn != "count":
            raise ValueError(f"'{self.fn}' needs a column")
        if self.distinct and self.column is None:
            raise ValueError("'distinct' needs a column (count(DISTINCT column))")
        return self

    @property
    def name(self) -> str:
        """The result key: ``as``, else ``count`` for ``count(*)``, else ``<fn>_<column>``."""
        if self.alias:
            return self.alias
        return self.fn if self.column is None else f"{self.fn}_{self.column}"


class _Query(_Frozen):
    table: Identifier

    @property
    def filters_(self) -> tuple[Any, ...]:
        return getattr(self, "filters", ())

    @property
    def is_write(self) -> bool:
        return getattr(self, "operation", "select") in WRITE_OPERATIONS


class SelectQuery(_Query):
    operation: Literal["select"]
    columns: Columns | None = None
    filters: Filters = ()
    order: Orders = ()
    limit: Limit | None = None
    offset: Offset = 0
    cache: Cache | None = None
    embed: Embeds | None = None
    distinct: StrictBool = False
    group_by: Annotated[tuple[Identifier, ...], Field(min_length=1, max_length=32)] | None = None
    aggregates: Annotated[tuple[Aggregate, ...], Field(min_length=1, max_length=MAX_AGGREGATES)] | None = None
    having: Filters = ()
    count: Literal["exact"] | None = None
    page: StrictBool = False

    @model_validator(mode="after")
    def _combinations(self) -> SelectQuery:
        if self.embed and (self.group_by or self.aggregates or self.distinct):
            raise ValueError("'embed' cannot be combined with group_by, aggregates or distinct")
        if self.having and not self.aggregates:
            raise ValueError("'having' filters aggregates; add 'aggregates'")
        if self.distinct and (self.group_by or self.aggregates):
            raise ValueError("'distinct' with group_by or aggregates is redundant; drop 'distinct'")
        return self

    @property
    def wants_page(self) -> bool:
        """The caller asked for ``{rows, truncated, next_offset, count?}`` instead of a bare list of rows."""
        return self.page or self.count is not None


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
    _check_nesting(raw, where)
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
        for path, embed in walk_embeds(query.embed, f"{where}embed") if query.embed else ():
            if embed.limit is not None and embed.limit > max_limit:
                raise InvalidQuery(f"{path}.limit: {embed.limit} is over the maximum of {max_limit} rows")
    return query


def walk_embeds(embeds: Mapping[str, Embed] | None, where: str) -> list[tuple[str, Embed]]:
    """Every embed of a query with its path (``embed.items.embed.product``), parents first."""
    out: list[tuple[str, Embed]] = []
    for alias, embed in (embeds or {}).items():
        path = f"{where}.{alias}"
        out.append((path, embed))
        out.extend(walk_embeds(embed.embed, f"{path}.embed"))
    return out


def _check_nesting(raw: Mapping[str, Any], where: str) -> None:
    """Size limits pydantic cannot express (or would only reach after recursing): filter trees and embed depth."""
    for key in ("filters", "having"):
        items = raw.get(key)
        # The walk only matters for groups: a flat list of plain conditions (the common case) is skipped.
        if isinstance(items, list | tuple) and any(type(i) is not dict or not _GROUP_KEYS.isdisjoint(i)
                                                   for i in items):
            check_filter_tree(items, f"{where}{key}")
    if raw.get("embed") is None:
        return
    total = [0]

    def embeds(value: Any, path: str, depth: int) -> None:
        if not isinstance(value, Mapping):
            return
        if depth >= MAX_EMBED_DEPTH:
            raise InvalidQuery(f"{path}: embeds are nested deeper than {MAX_EMBED_DEPTH} levels")
        for alias, item in value.items():
            total[0] += 1
            if total[0] > MAX_EMBEDS:
                raise InvalidQuery(f"{path}: more than {MAX_EMBEDS} embeds in one query")
            if isinstance(item, Mapping):
                check_filter_tree(item.get("filters"), f"{path}.{alias}.filters")
                embeds(item.get("embed"), f"{path}.{alias}.embed", depth + 1)

    embeds(raw.get("embed"), f"{where}embed", 0)


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
    elif kind in ("model_type", "model_attributes_type") and "[filter]" in first["loc"]:
        message = (f"{path}: must be a filter {{column, op, value}} or a group {{or: [...]}}, {{and: [...]}} "
                   "or {not: ...}")
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
