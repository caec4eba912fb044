"""HTTP <-> API Gateway HTTP API payload 2.0 conversion (functions/shared/apigw.py)."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.shared.apigw import HttpRequest, HttpResponse, build_event, event_body, proxy_result, to_http_response

NOW_MS = 1_583_348_638_390  # 04/Mar/2020:19:03:58 +0000


def json_request(**overrides: object) -> HttpRequest:
    fields: dict[str, object] = {
        "method": "post",
        "path": "/orders/42",
        "raw_query": "a=1&a=2&b=x%20y&c=&d=p+q",
        "headers": (
            ("Content-Type", "application/json"),
            ("Host", "api.example.com"),
            ("User-Agent", "curl/8"),
            ("X-Forwarded-For", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
            ("Cookie", "a=1; b=2"),
            ("cookie", "c=3;"),
        ),
        "body": b'{"total": 5}',
        "source_ip": "203.0.113.9",
    }
    fields.update(overrides)
    return HttpRequest(**fields)  # type: ignore[arg-type]


def test_build_event_has_the_payload_2_shape() -> None:
    event = build_event(json_request(), route_key="POST /orders/{id}", path_parameters={"id": "42"},
                        request_id="req-1", now_ms=NOW_MS)
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /orders/{id}"
    assert event["rawPath"] == "/orders/42"
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y&c=&d=p+q"
    assert event["headers"] == {
        "content-type": "application/json",
        "host": "api.example.com",
        "user-agent": "curl/8",
        "x-forwarded-for": "1.1.1.1,2.2.2.2",
    }
    assert event["cookies"] == ["a=1", "b=2", "c=3"]
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y", "c": "", "d": "p q"}
    assert event["pathParameters"] == {"id": "42"}
    assert event["isBase64Encoded"] is False
    assert event["body"] == '{"total": 5}'
    ctx = event["requestContext"]
    assert ctx["http"] == {"method": "POST", "path": "/orders/42", "protocol": "HTTP/1.1",
                           "sourceIp": "203.0.113.9", "userAgent": "curl/8"}
    assert ctx["requestId"] == "req-1"
    assert ctx["routeKey"] == "POST /orders/{id}"
    assert ctx["stage"] == "$default"
    assert ctx["timeEpoch"] == NOW_MS
    assert ctx["time"] == "04/Mar/2020:19:03:58 +0000"
    assert ctx["domainName"] == "api.example.com"
    assert ctx["domainPrefix"] == "api"
    assert ctx["accountId"] == "000000000000"
    assert ctx["apiId"] == "local"


def test_build_event_is_json_serialisable() -> None:
    event = build_event(json_request(), route_key="POST /orders/{id}", now_ms=NOW_MS)
    assert json.loads(json.dumps(event)) == event


def test_optional_keys_are_absent_when_empty() -> None:
    request = HttpRequest("GET", "/ping")
    event = build_event(request, route_key="GET /ping", now_ms=NOW_MS)
    for key in ("cookies", "queryStringParameters", "pathParameters", "body"):
        assert key not in event
    assert event["headers"] == {}
    assert event["rawQueryString"] == ""
    assert event["requestContext"]["domainName"] == "127.0.0.1"
    assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.1"
    assert event_body(event) == b""


def test_time_epoch_defaults_to_now() -> None:
    import time

    before = int(time.time() * 1000)
    event = build_event(HttpRequest("GET", "/"), route_key="GET /")
    assert before <= event["requestContext"]["timeEpoch"] <= int(time.time() * 1000)


def test_path_parameters_are_copied() -> None:
    params = {"id": "1"}
    event = build_event(HttpRequest("GET", "/o/1"), route_key="GET /o/{id}", path_parameters=params)
    params["id"] = "changed"
    assert event["pathParameters"] == {"id": "1"}


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "text/plain",
                                          "text/html", "application/x-www-form-urlencoded", "application/xml",
                                          "APPLICATION/JSON", None])
def test_text_bodies_are_not_base64(content_type: str | None) -> None:
    headers = (("content-type", content_type),) if content_type else ()
    body = "héllo wörld".encode()
    event = build_event(HttpRequest("POST", "/x", headers=headers, body=body), route_key="POST /x")
    assert event["isBase64Encoded"] is False
    assert event["body"] == "héllo wörld"
    assert event_body(event) == body


@pytest.mark.parametrize("content_type", ["application/octet-stream", "image/png", "application/pdf",
                                          "multipart/form-data; boundary=x"])
def test_binary_bodies_are_base64(content_type: str) -> None:
    body = b"\x89PNG\r\n\x1a\n\x00\xff\xfe"
    event = build_event(HttpRequest("POST", "/x", headers=(("Content-Type", content_type),), body=body),
                        route_key="POST /x")
    assert event["isBase64Encoded"] is True
    assert event["body"] == base64.b64encode(body).decode()
    assert event_body(event) == body


@given(st.binary(max_size=2048))
def test_binary_body_round_trips(body: bytes) -> None:
    request = HttpRequest("PUT", "/blob", headers=(("content-type", "application/octet-stream"),), body=body)
    assert event_body(build_event(request, route_key="PUT /blob", now_ms=NOW_MS)) == body


@given(st.text(st.characters(exclude_categories=("Cs",)), max_size=512))
def test_json_text_body_round_trips(text: str) -> None:
    body = text.encode("utf-8")
    request = HttpRequest("POST", "/t", headers=(("content-type", "application/json"),), body=body)
    assert event_body(build_event(request, route_key="POST /t", now_ms=NOW_MS)) == body


def test_http_request_header_lookup_is_case_insensitive() -> None:
    request = json_request()
    assert request.header("content-type") == "application/json"
    assert request.header("X-FORWARDED-FOR") == "1.1.1.1"
    assert request.header("missing") is None


def test_to_http_response_full_proxy_result() -> None:
    result = {
        "statusCode": 201,
        "headers": {"Content-Type": "image/png", "X-Count": 3},
        "multiValueHeaders": {"X-Multi": ["a", "b"]},
        "cookies": ["session=abc; HttpOnly", "theme=dark"],
        "body": base64.b64encode(b"\x00\x01\xff").decode(),
        "isBase64Encoded": True,
    }
    response = to_http_response(result)
    assert response.status == 201
    assert response.body == b"\x00\x01\xff"
    assert ("content-type", "image/png") in response.headers
    assert ("x-count", "3") in response.headers
    assert [v for k, v in response.headers if k == "x-multi"] == ["a", "b"]
    assert [v for k, v in response.headers if k == "set-cookie"] == ["session=abc; HttpOnly", "theme=dark"]
    assert response.header("Content-Type") == "image/png"


def test_to_http_response_text_body_and_string_status() -> None:
    response = to_http_response({"statusCode": "404", "body": "nope"})
    assert response.status == 404
    assert response.body == b"nope"
    assert response.headers == []


def test_to_http_response_without_body() -> None:
    response = to_http_response({"statusCode": 204})
    assert (response.status, response.body) == (204, b"")


@pytest.mark.parametrize("value", [{"orderId": 7}, [1, 2, 3], "hello", 42, None, True, {"status": "no statusCode"}])
def test_bare_value_becomes_200_json(value: object) -> None:
    response = to_http_response(value)
    assert response.status == 200
    assert response.header("content-type") == "application/json"
    assert response.json() == value


def test_proxy_result_shape() -> None:
    result = proxy_result(201, {"a": [1, 2]}, headers={"x-request-id": "abc"})
    assert result == {
        "statusCode": 201,
        "headers": {"content-type": "application/json", "x-request-id": "abc"},
        "body": '{"a":[1,2]}',
        "isBase64Encoded": False,
    }


def test_proxy_result_round_trips_through_to_http_response() -> None:
    response = to_http_response(proxy_result(202, {"request_id": "r", "job_id": "j"}))
    assert response.status == 202
    assert response.json() == {"request_id": "r", "job_id": "j"}
    assert response.header("content-type") == "application/json"


def test_http_response_json_of_empty_body_is_none() -> None:
    assert HttpResponse(204).json() is None
