"""Issue #15: a handler's Response as a payload 2.0 proxy result and back, ctx.request, input by content type."""

from __future__ import annotations

import base64
import json

import pytest

from functions.gateway.validation import InvalidForm, read_input
from functions.runtime.frames import FrameError, decode_frame
from functions.shared.apigw import FunctionResponse, request_view, response_result, to_http_response
from functions.shared.errors import InvalidJson, PayloadTooLarge


def parse(value: object) -> object:
    """The frame the worker would decode from ``value`` sent as one JSON line."""
    return decode_frame(json.dumps(value).encode())


def test_cookies_go_to_the_cookies_array_and_other_repeats_are_joined() -> None:
    result = response_result(FunctionResponse(201, (("Location", "/a/1"), ("set-cookie", "a=1"), ("x-v", "1"),
                                                    ("set-cookie", "b=2; HttpOnly"), ("X-V", "2")), "{}", False))
    assert result["statusCode"] == 201
    assert result["cookies"] == ["a=1", "b=2; HttpOnly"]
    assert result["headers"] == {"location": "/a/1", "x-v": "1, 2"}
    back = to_http_response(result)
    assert [v for k, v in back.headers if k == "set-cookie"] == ["a=1", "b=2; HttpOnly"]


def test_binary_bodies_stay_base64_and_round_trip() -> None:
    data = bytes(range(256))
    result = response_result(FunctionResponse(200, (("content-type", "image/png"),),
                                              base64.b64encode(data).decode(), True))
    assert result["isBase64Encoded"] is True
    assert to_http_response(result).body == data


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_for_204_and_304(status: int) -> None:
    result = response_result(FunctionResponse(status, (), "ignored", True))
    assert result["body"] == "" and result["isBase64Encoded"] is False
    assert "cookies" not in result


def test_request_view_is_multi_valued_and_carries_the_raw_body() -> None:
    event = {"rawPath": "/o/1", "rawQueryString": "a=1&a=2&b=", "headers": {"X-Thing": "v"},
             "cookies": ["s=abc", "t=x=y", "junk"], "pathParameters": {"id": "1"},
             "requestContext": {"http": {"method": "POST", "path": "/o/1"}}}
    view = request_view(event, b"\x00\xff", route="/o/{id}")
    assert view["query"] == {"a": ["1", "2"], "b": [""]}
    assert view["headers"] == {"x-thing": "v"}
    assert view["cookies"] == {"s": "abc", "t": "x=y"}
    assert view["params"] == {"id": "1"} and view["route"] == "/o/{id}" and view["method"] == "POST"
    assert view["body"] == b"\x00\xff"  # raw bytes; the runtime serves them to user code on demand


@pytest.mark.parametrize("content_type", [None, "application/json", "application/json; charset=utf-8",
                                          "application/vnd.api+json"])
def test_json_types_are_parsed_and_validated(content_type: str | None) -> None:
    assert read_input(b'{"a": 1}', content_type, 100) == {"a": 1}
    with pytest.raises(InvalidJson):
        read_input(b"a=1", content_type, 100)


def test_form_fields_are_strings_or_lists_when_repeated() -> None:
    fields = read_input(b"a=1&b=x+y&a=2&c=", "application/x-www-form-urlencoded; charset=utf-8", 100)
    assert fields == {"a": ["1", "2"], "b": "x y", "c": ""}
    with pytest.raises(InvalidForm) as info:
        read_input(b"a=\xff\xfe", "application/x-www-form-urlencoded", 100)
    assert info.value.status == 400 and info.value.code == "invalid_form"


@pytest.mark.parametrize("content_type", ["text/plain", "multipart/form-data; boundary=x", "application/octet-stream"])
def test_other_types_are_not_parsed_but_still_bounded(content_type: str) -> None:
    assert read_input(b"{not json", content_type, 100) is None
    with pytest.raises(PayloadTooLarge):
        read_input(b"x" * 101, content_type, 100)


def done(response: dict) -> dict:
    return {"t": "done", "id": 1, "ok": True, "response": response}


def test_a_response_frame_parses() -> None:
    frame = parse(done({"status": 302, "headers": [["location", "/x"], ["set-cookie", "a=1"]], "body": ""}))
    assert frame.response is not None and frame.response.headers == [["location", "/x"], ["set-cookie", "a=1"]]


@pytest.mark.parametrize("response", [
    {"status": 99},
    {"status": 600},
    {"status": "200"},
    {"status": 200, "headers": [["x-a", "b\r\nx-injected: 1"]]},
    {"status": 200, "headers": [["x-a", "b\n"]]},  # a final newline too (``$`` would let it through)
    {"status": 200, "headers": [["x-a\n", "b"]]},
    {"status": 200, "headers": [["bad name", "v"]]},
    {"status": 200, "headers": [["X-Upper", "v"]]},
    {"status": 200, "headers": [["only-a-name"]]},
    {"status": 200, "body": 5},
])
def test_malformed_response_frames_are_refused(response: dict) -> None:
    with pytest.raises(FrameError):
        parse(done(response))
