"""``input_schema`` validation: a bad input is a 400 ``validation_failed`` naming the field, before user code runs.

JSON Schema Draft 2020-12 through ``jsonschema`` with format checking on.
Compiled validators are cached by the schema's canonical JSON (schemas are
dicts, so they cannot key a cache themselves; the text is small and a
function's schema is checked on every request).

The field is named as a JSON pointer (``/items/0/qty``; the empty pointer is
the whole input). For a missing required property or an unexpected one, the
pointer names that property rather than the object holding it. When several
things are wrong, ``jsonschema.exceptions.best_match`` picks the one to report;
``details["errors"]`` lists up to ten.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from functions.shared.errors import InvalidJson, PayloadTooLarge, ValidationFailed

if TYPE_CHECKING:  # jsonschema costs ~70 ms to import: only functions with an input_schema pay it
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

MAX_REASON_CHARS = 200
MAX_LISTED_ERRORS = 10
_CACHE_SIZE = 256

_cache: dict[str, Draft202012Validator] = {}
# The same schema object (a function's input_schema from its loaded manifest) comes back on every
# request: found by identity first, without re-serialising it (the object is kept, so its id stays its own).
_by_identity: dict[int, tuple[dict[str, Any], Draft202012Validator]] = {}


class InvalidForm(InvalidJson):
    """A form body that is not UTF-8: 400 ``invalid_form``."""

    code = "invalid_form"


_lock = threading.Lock()


def compiled(schema: dict[str, Any]) -> Draft202012Validator:
    """The cached validator for ``schema``."""
    known = _by_identity.get(id(schema))
    if known is not None and known[0] is schema:
        return known[1]
    key = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    validator = _cache.get(key)
    if validator is None:
        from jsonschema import Draft202012Validator

        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        with _lock:
            if len(_cache) >= _CACHE_SIZE:
                _cache.clear()
            _cache[key] = validator
    with _lock:
        if len(_by_identity) >= _CACHE_SIZE:
            _by_identity.clear()
        _by_identity[id(schema)] = (schema, validator)
    return validator


def read_input(body: bytes, content_type: str | None, max_body_bytes: int) -> Any:
    """``input`` from a request body, by content type (the raw body is always in ``ctx.request.body``).

    * no content type, ``application/json`` or ``application/*+json``: the JSON value (400 ``invalid_json``);
    * ``application/x-www-form-urlencoded``: the form fields, a string each, or a list of strings when a
      field is repeated;
    * anything else (text, multipart, binary): ``None`` — the body is not parsed, the function reads it.

    Over ``max_body_bytes`` is 413 whatever the type.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if not media or media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return read_json_input(body, max_body_bytes)
    _check_size(body, max_body_bytes)
    if media == "application/x-www-form-urlencoded":
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidForm("form body is not UTF-8 text") from None
        fields: dict[str, Any] = {}
        for name, value in parse_qsl(text, keep_blank_values=True):
            if name in fields:
                previous = fields[name]
                fields[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
            else:
                fields[name] = value
        return fields
    return None


def _check_size(body: bytes, max_body_bytes: int) -> None:
    if len(body) > max_body_bytes:
        raise PayloadTooLarge(f"request body is {len(body)} bytes; the limit is {max_body_bytes} "
                              "(limits.max_body_bytes)")


def read_json_input(body: bytes, max_body_bytes: int) -> Any:
    """The JSON value of a request body: 413 over ``max_body_bytes``, 400 ``invalid_json`` if unreadable.

    An empty body is ``None`` (a GET, or a POST without input). ``NaN`` and
    ``Infinity`` are refused: they are not JSON and user code could not round-trip them.
    """
    _check_size(body, max_body_bytes)
    if not body.strip():
        return None
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise InvalidJson("request body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InvalidJson(f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") \
            from None
    except (ValueError, RecursionError) as exc:
        raise InvalidJson(f"request body is not valid JSON: {exc}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def validate_input(schema: dict[str, Any], value: Any) -> None:
    """Raise :class:`ValidationFailed` (400) naming the first bad field; return None when ``value`` is valid."""
    validator = compiled(schema)
    if validator.is_valid(value):  # half the cost of collecting errors; the errors only for a bad input
        return
    errors = list(validator.iter_errors(value))
    from jsonschema.exceptions import best_match

    chosen = best_match(errors)
    field, reason = describe(chosen)
    where = f"field '{field}'" if field else "the input"
    raise ValidationFailed(
        f"invalid input: {where}: {reason}",
        details={"field": field, "reason": reason, "keyword": chosen.validator,
                 "errors": [dict(zip(("field", "reason"), describe(e), strict=True))
                            for e in errors[:MAX_LISTED_ERRORS]]},
    )


def describe(error: ValidationError) -> tuple[str, str]:
    """(JSON pointer of the offending field, short reason)."""
    path = list(error.absolute_path)
    reason = error.message
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in _strings(error.validator_value) if name not in error.instance]
        if missing:
            path.append(missing[0])
            reason = "is required"
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict) \
            and not error.schema.get("patternProperties"):
        known = set(error.schema.get("properties") or {})
        extra = sorted(k for k in error.instance if k not in known)
        if extra:
            path.append(extra[0])
            reason = "is not an allowed property"
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 1] + "…"
    return pointer(path), reason


def pointer(path: Iterable[Any]) -> str:
    """RFC 6901 JSON pointer for a path of keys and indexes."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
