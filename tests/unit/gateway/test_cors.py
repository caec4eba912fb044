"""CORS preflight and simple-request headers for allowed and disallowed origins."""

from __future__ import annotations

from functions.gateway.cors import allowed_headers, cors_headers, is_preflight, origin_allowed, preflight_response
from functions.shared.manifest import Cors

CORS = Cors(origins=["https://app.example.com", "http://localhost:5173"], headers=["content-type", "x-api-key"],
            max_age=600)
PREFLIGHT = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "content-type,x-api-key"}


def test_preflight_from_an_allowed_origin() -> None:
    response = preflight_response(PREFLIGHT, "/orders", CORS, ["POST", "GET"])
    assert response is not None
    assert response["statusCode"] == 204
    assert response["body"] == ""
    assert response["headers"] == {
        "Vary": "Origin",
        "Access-Control-Allow-Origin": "https://app.example.com",
        "Access-Control-Allow-Methods": "GET, OPTIONS, POST",
        "Access-Control-Allow-Headers": "content-type, x-api-key, x-request-id, traceparent",
        "Access-Control-Max-Age": "600",
    }


def test_trace_headers_are_always_allowed_once() -> None:
    # README invites browsers to send x-request-id / traceparent, whatever flux.json's cors.headers lists.
    assert allowed_headers(["content-type"]) == ["content-type", "x-request-id", "traceparent"]
    assert allowed_headers(["X-Request-Id", "traceparent"]) == ["X-Request-Id", "traceparent"]


def test_preflight_from_a_disallowed_origin_gets_no_allow_headers() -> None:
    response = preflight_response({**PREFLIGHT, "Origin": "https://evil.example"}, "/orders", CORS, ["POST"])
    assert response is not None and response["statusCode"] == 204
    assert response["headers"] == {"Vary": "Origin"}
    assert not any(h.lower().startswith("access-control-") for h in response["headers"])


def test_origin_matching_is_exact_apart_from_case() -> None:
    assert origin_allowed("HTTPS://APP.EXAMPLE.COM", CORS)
    assert not origin_allowed("https://app.example.com.evil.example", CORS)
    assert not origin_allowed("https://evil.app.example.com", CORS)
    assert not origin_allowed("http://app.example.com", CORS)  # scheme matters
    assert not origin_allowed("http://localhost:5174", CORS)  # port matters
    assert not origin_allowed("null", CORS)
    assert not origin_allowed(None, CORS)


def test_not_a_preflight_or_no_route_is_left_to_the_caller() -> None:
    assert preflight_response({"Origin": "https://app.example.com"}, "/orders", CORS, ["POST"]) is None
    assert preflight_response({"Access-Control-Request-Method": "POST"}, "/orders", CORS, ["POST"]) is None
    assert preflight_response(PREFLIGHT, "/nothing", CORS, []) is None
    assert is_preflight("OPTIONS", PREFLIGHT)
    assert not is_preflight("POST", PREFLIGHT)
    assert not is_preflight("OPTIONS", {"origin": "x"})


def test_simple_request_headers() -> None:
    allowed = cors_headers("https://app.example.com", CORS)
    assert allowed["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert allowed["Vary"] == "Origin"
    assert "RateLimit-Remaining" in allowed["Access-Control-Expose-Headers"]
    assert "x-request-id" in allowed["Access-Control-Expose-Headers"]
    assert cors_headers("https://evil.example", CORS) == {"Vary": "Origin"}
    assert cors_headers(None, CORS) == {"Vary": "Origin"}


def test_wildcard_and_no_cors() -> None:
    wildcard = Cors(origins=["*"])
    assert cors_headers("https://anything.example", wildcard)["Access-Control-Allow-Origin"] == "*"
    response = preflight_response(PREFLIGHT, "/orders", wildcard, ["POST"])
    assert response["headers"]["Access-Control-Allow-Origin"] == "*"
    assert cors_headers("https://app.example.com", Cors()) == {}
    assert preflight_response(PREFLIGHT, "/orders", Cors(), ["POST"])["headers"] == {"Vary": "Origin"}
