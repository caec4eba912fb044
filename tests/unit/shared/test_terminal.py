"""Terminal escaping (functions/shared/terminal.py): nothing a request or a function chose can drive the terminal."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from functions.shared.terminal import escape, escape_tree


def test_osc52_clipboard_write_and_forged_lines_are_shown_not_executed() -> None:
    assert escape("/\x1b]52;c;ZWNobyBwd25lZAo=\x07x") == "/\\x1b]52;c;ZWNobyBwd25lZAo=\\x07x"
    assert escape("GET /a\nPOST /forged 200") == "GET /a\\nPOST /forged 200"
    assert escape("a\rb\tc\x7fd\x9be\u2028") == "a\\rb\\tc\\x7fd\\x9be\\u2028"


def test_printable_text_is_unchanged() -> None:
    assert escape("Grüße, 世界 — /orders/{id} 😀") == "Grüße, 世界 — /orders/{id} 😀"


@given(st.text())
def test_no_control_character_survives(text: str) -> None:
    out = escape(text)
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in out)


def test_escape_tree_reaches_keys_values_and_deep_nesting() -> None:
    assert escape_tree({"k\x1b": ["v\x07", 1, None]}) == {"k\\x1b": ["v\\x07", 1, None]}
    deep: dict = {}
    node = deep
    for _ in range(3000):
        node["c"] = [{"m": "\x1b"}]
        node = node["c"][0]
    out = escape_tree(deep)
    for _ in range(3000):
        out = out["c"][0]
    assert out == {"m": "\\x1b"}
