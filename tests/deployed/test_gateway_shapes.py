"""API Gateway's own behaviour around the functions: routing, $default, response mapping, binary bodies."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.xdist_group("deployed")


def test_unknown_route_reaches_default_and_gets_the_flux_404(api):
    response = api.get("/no/such/route")
    assert response.status_code == 404, response.text
    assert response.json()["error"] == "route_not_found"
    assert response.headers["x-request-id"] == response.json()["request_id"]


def test_path_parameter_and_web_response_with_cookies_and_binary_body(api):
    response = api.get("/respond/binary")
    assert response.status_code == 201, response.text
    assert response.content == bytes([0, 1, 2, 253, 254, 255])
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/; HttpOnly"]
    assert response.headers["x-request-id"]


def test_204_without_body_and_plain_json_return(api):
    empty = api.get("/respond/empty")
    assert empty.status_code == 204 and empty.content == b""
    plain = api.get("/respond/plain")
    assert plain.status_code == 200 and plain.json() == {"kind": "plain"}


def test_binary_request_body_reaches_the_function_intact(api):
    sent = bytes(range(256)) + b"\xff\xfe not json"
    response = api.post("/echo", content=sent, headers={"content-type": "application/octet-stream"})
    assert response.status_code == 200, response.text
    assert response.content == sent and response.headers["x-sent-type"] == "application/octet-stream"


def test_a_json_body_that_is_not_json_is_refused_before_the_function(api):
    response = api.post("/hello", content=b"\xff\xfe not json", headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_json"
