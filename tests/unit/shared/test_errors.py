"""The error root and the one HTTP mapping (DESIGN §4 "Responses and errors")."""

from __future__ import annotations

import json

import pytest

from functions.shared import errors
from functions.shared.errors import (
    FluxError,
    RateLimited,
    UserError,
    error_body,
    error_for_code,
    error_response,
)

DESIGN_TABLE = [
    (errors.InvalidJson, 400, "invalid_json"),
    (errors.ValidationFailed, 400, "validation_failed"),
    (errors.InvalidQuery, 400, "invalid_query"),
    (errors.Unauthorized, 401, "unauthorized"),
    (errors.Forbidden, 403, "forbidden"),
    (errors.RouteNotFound, 404, "route_not_found"),
    (errors.PayloadTooLarge, 413, "payload_too_large"),
    (errors.RateLimited, 429, "rate_limited"),
    (errors.FunctionError, 500, "function_error"),
    (errors.RuntimeCrashed, 502, "runtime_crashed"),
    (errors.DatabaseUnavailable, 503, "database_unavailable"),
    (errors.FunctionTimeout, 504, "function_timeout"),
]


@pytest.mark.parametrize(("cls", "status", "code"), DESIGN_TABLE)
def test_status_and_code_per_design_table(cls: type[FluxError], status: int, code: str) -> None:
    assert issubclass(cls, FluxError)
    assert (cls.status, cls.code) == (status, code)
    err = cls("boom")
    assert (err.status, err.code, err.message, str(err)) == (status, code, "boom", "boom")


def test_root_defaults() -> None:
    err = FluxError("x")
    assert (err.status, err.code) == (500, "internal_error")
    assert err.headers == {} and err.details == {}


def test_headers_and_details_are_copied() -> None:
    headers = {"retry-after": "5"}
    details = {"field": "total"}
    err = FluxError("x", headers=headers, details=details)
    headers["retry-after"] = "999"
    details["field"] = "other"
    assert err.headers == {"retry-after": "5"}
    assert err.details == {"field": "total"}


@pytest.mark.parametrize(("cls", "status", "code"), DESIGN_TABLE)
def test_error_response_body_is_exactly_the_standard_three_keys(cls: type[FluxError], status: int,
                                                                code: str) -> None:
    result = error_response(cls("human text"), "abc123")
    assert result["statusCode"] == status
    assert result["isBase64Encoded"] is False
    assert json.loads(result["body"]) == {"error": code, "message": "human text", "request_id": "abc123"}
    assert result["headers"]["content-type"] == "application/json"
    assert result["headers"]["x-request-id"] == "abc123"


def test_error_response_keeps_extra_headers() -> None:
    err = RateLimited("slow down", headers={"retry-after": "7", "ratelimit-remaining": "0"})
    result = error_response(err, "rid")
    assert result["statusCode"] == 429
    assert result["headers"] == {"content-type": "application/json", "x-request-id": "rid",
                                 "retry-after": "7", "ratelimit-remaining": "0"}


def test_error_response_does_not_leak_details() -> None:
    err = errors.ValidationFailed("bad input", details={"stack": "secret internals"})
    assert "secret internals" not in error_response(err, "r")["body"]


def test_error_body() -> None:
    assert error_body("forbidden", "no", "r1") == {"error": "forbidden", "message": "no", "request_id": "r1"}


@pytest.mark.parametrize(("cls", "status", "code"), DESIGN_TABLE)
def test_error_for_code_rebuilds_the_type(cls: type[FluxError], status: int, code: str) -> None:
    err = error_for_code(code, "msg", headers={"retry-after": "1"})
    assert type(err) is cls
    assert (err.status, err.code, err.message, err.headers) == (status, code, "msg", {"retry-after": "1"})


def test_error_for_unknown_code_is_a_generic_500() -> None:
    err = error_for_code("no_such_code", "msg")
    assert type(err) is FluxError
    assert (err.status, err.code, err.message) == (500, "internal_error", "msg")


def test_user_error_carries_status_and_code_per_instance() -> None:
    teapot = UserError(418, "teapot", "I am a teapot")
    payment = UserError(402, "payment_required", "pay first")
    assert (teapot.status, teapot.code, teapot.message) == (418, "teapot", "I am a teapot")
    assert (payment.status, payment.code) == (402, "payment_required")
    assert (UserError.status, UserError.code) == (500, "internal_error")
    assert (FluxError.status, FluxError.code) == (500, "internal_error")
    result = error_response(teapot, "rid")
    assert result["statusCode"] == 418
    assert json.loads(result["body"]) == {"error": "teapot", "message": "I am a teapot", "request_id": "rid"}
