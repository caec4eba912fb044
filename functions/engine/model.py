"""The structured query model: the raw JSON object from ``ctx.db.query`` as validated frozen models.

Everything user code sends is checked here for *shape* before the compiler checks it
against the live schema: known keys only (per operation), plain identifiers of at most
63 bytes, known operators, JSON values without NUL bytes or non-finite numbers, an `in`
list of at most :data:`MAX_IN_LIST` items, a limit no bigger than the cap. Any failure is
an :class:`InvalidQuery` (400) whose message names the offending part (``filters[0].op``),
raised before a single byte of SQL exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    StrictBool,
    StrictInt,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from functions.engine.filters import _GROUP_KEYS as _GROUP_KEYS
from functions.engine.filters import (
    AndFilter,
    Filter,
    FilterItem,
    NotFilter,
    OrFilter,
    check_filter_tree,
    children,
    conjuncts,
    leaves,
)
from functions.engine.model_base import (
    AGGREGATES,
    ARRAY_OPERATORS,
    DEFAULT_LIMIT,
    LIST_OPERATORS,
    MAX_AGGREGATES,
    MAX_BATCH,
    MAX_BULK_ROWS,
    MAX_CACHE_TTL_S,
    MAX_COLUMNS,
    MAX_EMBED_DEPTH,
    MAX_EMBEDS,
    MAX_FILTER_DEPTH,
    MAX_FILTERS,
    MAX_IDENTIFIER_BYTES,
    MAX_IN_LIST,
    MAX_JSON_DEPTH,
    MAX_LIMIT,
    MAX_OFFSET,
    MAX_ORDER,
    MAX_PATH,
    NULL_OPERATORS,
    OPERATIONS,
    OPERATORS,
    SEARCH_CONFIGS,
    WRITE_OPERATIONS,
    Identifier,
    JsonValue,
    Operator,
    Row,
    _Frozen,
    _lower,
    check_identifier,
    check_json_value,
    is_ref,
)
from functions.shared.errors import InvalidQuery

__all__ = [
    "AGGREGATES", "ARRAY_OPERATORS", "DEFAULT_LIMIT", "LIST_OPERATORS", "MAX_AGGREGATES", "MAX_BATCH",
    "MAX_BULK_ROWS", "MAX_CACHE_TTL_S", "MAX_COLUMNS", "MAX_EMBEDS", "MAX_EMBED_DEPTH", "MAX_FILTERS",
    "MAX_FILTER_DEPTH", "MAX_IDENTIFIER_BYTES", "MAX_IN_LIST", "MAX_JSON_DEPTH", "MAX_LIMIT", "MAX_OFFSET",
    "MAX_ORDER", "MAX_PATH", "NULL_OPERATORS", "OPERATIONS", "OPERATORS", "SEARCH_CONFIGS", "WRITE_OPERATIONS",
    "Aggregate", "AndFilter", "Cache", "DeleteQuery", "Embed", "Filter", "FilterItem", "Identifier", "InsertQuery",
    "JsonValue", "NotFilter", "Operator", "OrFilter", "Order", "Query", "Row", "SelectQuery", "UpdateQuery",
    "UpsertQuery", "check_filter_tree", "check_identifier", "check_json_value", "children", "conjuncts",
    "describe", "is_ref", "leaves", "parse_batch", "parse_query", "walk_embeds",
]


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
