"""Property: for any query over the test schema, the SQL names only known tables and columns and holds no value."""

from __future__ import annotations

import base64
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.engine.compiler import compile
from functions.engine.model import OPERATORS, parse_query
from functions.engine.schema import Column, Schema
from functions.shared.errors import InvalidQuery

_KEYWORDS = {"SELECT", "FROM", "WHERE", "AND", "ORDER", "BY", "ASC", "DESC", "LIMIT", "OFFSET", "INSERT", "INTO",
             "VALUES", "DEFAULT", "RETURNING", "UPDATE", "SET", "DELETE", "ON", "CONFLICT", "DO", "NOTHING",
             "EXCLUDED", "IS", "NOT", "NULL", "LIKE", "ILIKE", "ANY", "ALL"}
_SYMBOLS = {"*", "=", "<>", "<", "<=", ">", ">=", "(", ")", ",", ".", "%s", "::"}
_IDENT = re.compile(r'"((?:[^"]|"")*)"')
_CAST = re.compile(r'::"pg_catalog"\."_?[a-z0-9]+"')
_TOKEN = re.compile(r"%s|::|<>|<=|>=|[A-Z]+|[*=<>(),.]|\S+")

text_values = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False, allow_infinity=False)
    | text_values,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text_values, inner, max_size=3), max_leaves=8)


def value_for(column: Column) -> st.SearchStrategy[Any]:
    if column.is_json:
        return json_values
    if column.is_array:
        return st.lists(text_values, max_size=4)
    if column.udt == "int2":
        return st.integers(-(2**15) + 1, 2**15 - 1) | st.integers(0, 999).map(str)
    if column.udt in ("int4", "int8"):
        return st.integers(-(2**31) + 1, 2**31 - 1) | st.integers(0, 10**9).map(str)
    if column.udt in ("float8", "numeric"):
        return st.floats(-1e9, 1e9, allow_nan=False) | st.integers(-(10**12), 10**12)
    if column.udt == "bool":
        return st.booleans()
    if column.udt == "uuid":
        return st.uuids().map(str)
    if column.udt == "bytea":
        return st.binary(max_size=16).map(lambda b: base64.b64encode(b).decode())
    if column.udt == "timestamptz":
        return st.datetimes().map(lambda d: d.isoformat())
    return text_values


@st.composite
def queries(draw: st.DrawFn, schema: Schema) -> dict[str, Any]:
    table = schema.tables[draw(st.sampled_from(["users", "orders"]))]
    columns = list(table.columns.values())
    operation = draw(st.sampled_from(["select", "insert", "update", "delete", "upsert"]))
    query: dict[str, Any] = {"table": table.name, "operation": operation}

    def filters() -> list[dict[str, Any]]:
        out = []
        for _ in range(draw(st.integers(1, 4))):
            column = draw(st.sampled_from(columns))
            op = draw(st.sampled_from(OPERATORS))
            if op in ("is_null", "not_null"):
                out.append({"column": column.name, "op": op})
            elif op in ("in", "not_in"):
                out.append({"column": column.name, "op": op, "value": draw(st.lists(value_for(column), max_size=5))})
            elif op in ("like", "ilike"):
                out.append({"column": column.name, "op": op, "value": draw(text_values)})
            else:
                value = draw(value_for(column))
                if value is None:
                    value = 0
                out.append({"column": column.name, "op": op, "value": value})
        return out

    def row() -> dict[str, Any]:
        chosen = draw(st.lists(st.sampled_from(columns), min_size=1, max_size=4, unique_by=lambda c: c.name))
        return {c.name: draw(value_for(c)) for c in chosen}

    if operation == "select":
        if draw(st.booleans()):
            query["columns"] = [c.name for c in draw(st.lists(st.sampled_from(columns), min_size=1, max_size=3))]
        if draw(st.booleans()):
            query["filters"] = filters()
        if draw(st.booleans()):
            query["order"] = [{"column": draw(st.sampled_from(columns)).name,
                               "direction": draw(st.sampled_from(["asc", "desc"]))}]
        query["limit"] = draw(st.integers(0, 1000))
        query["offset"] = draw(st.integers(0, 1000))
    elif operation in ("insert", "upsert"):
        query["data"] = row() if draw(st.booleans()) else [row() for _ in range(draw(st.integers(1, 3)))]
        if operation == "upsert":
            query["data"] = query["data"] if isinstance(query["data"], dict) else query["data"][0]
    elif operation == "update":
        query["data"] = row()
        query["filters"] = filters()
    else:
        query["filters"] = filters()
    if operation != "select" and draw(st.booleans()):
        query["returning"] = [c.name for c in draw(st.lists(st.sampled_from(columns), max_size=2))]
    return query


def _check(schema: Schema, raw: dict[str, Any]) -> bool:
    try:
        statement, params = compile(parse_query(raw), schema)
    except InvalidQuery:
        return False   # a value of the wrong kind for its column: refused, which is also safe
    text = statement.as_string(None)
    table = schema.tables[raw["table"]]
    without_casts = _CAST.sub("::", text)
    names = {m.replace('""', '"') for m in _IDENT.findall(without_casts)}
    assert names <= {table.name, *table.columns}, (names, text)
    skeleton = _IDENT.sub(" ", without_casts)
    tokens = _TOKEN.findall(skeleton)
    unexpected = [t for t in tokens if t not in _KEYWORDS | _SYMBOLS]
    assert not unexpected, (unexpected, text)
    assert text.count("%s") == len(params)
    return True


def test_compiled_sql_names_only_known_identifiers_and_no_values(schema: Schema) -> None:
    outcomes: list[bool] = []

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        outcomes.append(_check(schema, data.draw(queries(schema))))

    run()
    # Guard against a vacuous property: most generated queries must get through the compiler.
    assert sum(outcomes) >= len(outcomes) // 2, f"only {sum(outcomes)} of {len(outcomes)} compiled"
