"""The compiler's own SQL parts render exactly as psycopg's (they skip only psycopg's per-part checks)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql

from functions.engine.conditions import composed, ident, sql_join

NAMES = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1, max_size=30)


@given(st.lists(NAMES, min_size=1, max_size=3))
def test_an_identifier_is_quoted_as_psycopg_quotes_it(names: list[str]) -> None:
    assert ident(*names).as_string(None) == sql.Identifier(*names).as_string(None)


def test_an_identifier_with_a_nul_is_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        ident("a\x00b")


@given(st.lists(NAMES, max_size=5))
def test_composed_and_joined_parts_render_as_psycopgs(names: list[str]) -> None:
    parts = [sql.Identifier(n) for n in names]
    assert composed([sql.SQL("("), *parts, sql.SQL(")")]).as_string(None) == \
        sql.Composed([sql.SQL("("), *parts, sql.SQL(")")]).as_string(None)
    assert sql_join(sql.SQL(", "), parts).as_string(None) == sql.SQL(", ").join(parts).as_string(None)
