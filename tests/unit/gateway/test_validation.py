"""Input schema validation and body limits: the right 4xx, naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from functions.gateway.validation import compiled, pointer, read_json_input, validate_input
from functions.shared.errors import InvalidJson, PayloadTooLarge, ValidationFailed, error_response

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["userId", "items"],
    "additionalProperties": False,
    "properties": {
        "userId": {"type": "string", "minLength": 1},
        "email": {"type": "string", "format": "email"},
        "items": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["sku", "qty"],
            "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}}},
    },
}
VALID = {"userId": "u1", "items": [{"sku": "A", "qty": 2}]}


def test_valid_input_passes() -> None:
    assert validate_input(SCHEMA, VALID) is None


@pytest.mark.parametrize("value,field,reason_part", [
    ({"items": [{"sku": "A", "qty": 1}]}, "/userId", "is required"),
    ({**VALID, "items": [{"sku": "A", "qty": 0}]}, "/items/0/qty", "minimum"),
    ({**VALID, "items": [{"sku": "A", "qty": "2"}]}, "/items/0/qty", "not of type 'integer'"),
    ({**VALID, "items": [{"sku": "A"}]}, "/items/0/qty", "is required"),
    ({**VALID, "admin": True}, "/admin", "not an allowed property"),
    ({**VALID, "email": "not-an-email"}, "/email", "is not a 'email'"),
    ([1, 2], "", "not of type 'object'"),
])
def test_invalid_input_names_the_field(value: Any, field: str, reason_part: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_input(SCHEMA, value)
    error = caught.value
    assert error.details["field"] == field
    assert reason_part in error.details["reason"]
    assert (f"'{field}'" in error.message) if field else ("the input" in error.message)
    response = error_response(error, "rid")
    assert response["statusCode"] == 400
    assert '"error": "validation_failed"' in response["body"]


def test_long_values_do_not_bloat_the_message() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_input({"type": "integer"}, "x" * 100_000)
    assert len(caught.value.message) < 300


def test_validators_are_cached_by_content() -> None:
    assert compiled({"type": "string"}) is compiled({"type": "string"})
    assert compiled({"type": "string"}) is not compiled({"type": "integer"})


def test_pointer_escapes() -> None:
    assert pointer(["a/b", "c~d", 0]) == "/a~1b/c~0d/0"
    assert pointer([]) == ""


def test_read_json_input() -> None:
    assert read_json_input(b'{"a": 1}', 100) == {"a": 1}
    assert read_json_input(b"", 100) is None
    assert read_json_input(b"  \n", 100) is None
    with pytest.raises(PayloadTooLarge):
        read_json_input(b"x" * 101, 100)
    for bad in (b"{", b"{'a': 1}", b"NaN", b'{"a": Infinity}', b"\xff\xfe", b"[" * 100_000):
        with pytest.raises(InvalidJson):
            read_json_input(bad, 1_000_000)
    assert error_response(PayloadTooLarge("x"), "r")["statusCode"] == 413
