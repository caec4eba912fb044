"""The statement splitter for no-transaction migrations: semicolons inside quotes and comments stay put."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.engine.sql_split import UnterminatedSql, split_statements


def texts(script: str) -> list[str]:
    return [s.text for s in split_statements(script)]


def test_plain_statements_and_empty_ones() -> None:
    assert texts("SELECT 1; SELECT 2;;\n  ;") == ["SELECT 1", "SELECT 2"]
    assert texts("SELECT 1") == ["SELECT 1"]
    assert texts("-- only a comment;\n/* and; this */") == []


@pytest.mark.parametrize(("script", "expected"), [
    ("SELECT 'a;b'; SELECT 2", ["SELECT 'a;b'", "SELECT 2"]),
    ("SELECT 'it''s;'; SELECT 2", ["SELECT 'it''s;'", "SELECT 2"]),
    ("SELECT E'\\';'; SELECT 2", ["SELECT E'\\';'", "SELECT 2"]),        # E-string: backslash escapes the quote
    ("SELECT '\\'; SELECT 2", ["SELECT '\\'", "SELECT 2"]),              # standard string: the backslash is text
    ('SELECT 1 AS "a;""b"; SELECT 2', ['SELECT 1 AS "a;""b"', "SELECT 2"]),
    ("DO $$ BEGIN PERFORM 1; END $$; SELECT 2", ["DO $$ BEGIN PERFORM 1; END $$", "SELECT 2"]),
    ("SELECT $t$ $$; $t$; SELECT 2", ["SELECT $t$ $$; $t$", "SELECT 2"]),
    ("SELECT $1; SELECT a$b$; SELECT 3", ["SELECT $1", "SELECT a$b$", "SELECT 3"]),  # not dollar quotes
    ("SELECT 1 -- x; y\n; SELECT 2", ["SELECT 1 -- x; y", "SELECT 2"]),
    ("SELECT /* a /* b; */ c; */ 1; SELECT 2", ["SELECT /* a /* b; */ c; */ 1", "SELECT 2"]),
])
def test_semicolons_inside_quotes_and_comments_do_not_split(script: str, expected: list[str]) -> None:
    assert texts(script) == expected


def test_offsets_point_at_each_statement() -> None:
    script = "-- flux:no-transaction\nCREATE INDEX a;\n\n  CREATE INDEX b;"
    assert [script[s.offset:s.offset + len(s.text)] for s in split_statements(script)] == \
        ["-- flux:no-transaction\nCREATE INDEX a", "CREATE INDEX b"]


@pytest.mark.parametrize("script", ["SELECT 'open", 'SELECT "open', "DO $x$ never closed", "/* open /* */"])
def test_unterminated_quotes_are_refused(script: str) -> None:
    with pytest.raises(UnterminatedSql):
        split_statements(script)


_SAFE = st.text(alphabet=st.sampled_from("abc XYZ_01(),=*\n\t"), min_size=1, max_size=20)
_QUOTED = st.one_of(
    st.text(alphabet=st.sampled_from("ab;'$-/* \n"), max_size=12).map(lambda t: "'" + t.replace("'", "''") + "'"),
    st.text(alphabet=st.sampled_from('ab;"$- '), max_size=12).map(lambda t: '"' + t.replace('"', '""') + '"'),
    st.text(alphabet=st.sampled_from("ab;'\"- \n"), max_size=12).map(lambda t: "$q$" + t + "$q$"),
)


@given(st.lists(st.lists(st.one_of(_SAFE, _QUOTED), min_size=1, max_size=5).map(" ".join), min_size=1, max_size=6))
def test_joined_statements_split_back(statements: list[str]) -> None:
    statements = [s.strip() for s in statements if s.strip()]
    assert texts(";\n".join(statements)) == statements
