"""Filters: one condition ``{column, op, value}`` or a nested ``{or}`` / ``{and}`` / ``{not}`` group.

Validated for shape only (operators, value kinds, nesting); the compiler checks names against
the schema. The union is tagged by the item's keys, with tags kept out of error paths, so a
message names ``filters[1].or[0].column`` exactly as the caller wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    StrictInt,
    StrictStr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from functions.engine.model_base import (
    ARRAY_OPERATORS,
    LIST_OPERATORS,
    MAX_FILTER_DEPTH,
    MAX_FILTERS,
    MAX_IN_LIST,
    MAX_PATH,
    NULL_OPERATORS,
    SEARCH_CONFIGS,
    Identifier,
    JsonValue,
    Operator,
    _Frozen,
    _lower,
    check_json_value,
    is_ref,
)
from functions.shared.errors import InvalidQuery

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
