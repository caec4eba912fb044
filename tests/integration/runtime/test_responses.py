"""Issue #15: a handler's Web ``Response`` and ``ctx.request``, through real Deno workers and the local gateway."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from functions.shared.apigw import HttpRequest, HttpResponse
from tests.integration.runtime.conftest import Harness, write_project

pytestmark = pytest.mark.integration

FUNCTIONS: dict[str, tuple[dict, str]] = {
    "created": ({"route": "/things"}, """
        export default async function handler(input) {
          const headers = new Headers({ "location": "/things/7", "content-type": "application/json" });
          headers.append("set-cookie", "a=1; Path=/; HttpOnly");
          headers.append("set-cookie", "b=2; Path=/");
          headers.append("x-multi", "one");
          headers.append("x-multi", "two");
          return new Response(JSON.stringify({ id: 7, name: input.name }), { status: 201, headers });
        }"""),
    "gone": ({"route": "/things/{id}", "method": "DELETE"}, """
        export default async function handler() { return new Response(null, { status: 204 }); }"""),
    "moved": ({"method": "GET"}, """
        export default async function handler() { return Response.redirect("http://127.0.0.1/elsewhere", 302); }"""),
    "csv": ({"method": "GET"}, """
        export default async function handler() {
          return new Response("a,b\\n1,2\\n", { headers: { "content-type": "text/csv; charset=utf-8" } });
        }"""),
    "png": ({"method": "GET"}, """
        export default async function handler() {
          const bytes = new Uint8Array(300);
          for (let i = 0; i < bytes.length; i++) bytes[i] = i % 256;
          return new Response(bytes, { headers: { "content-type": "image/png" } });
        }"""),
    "own_error": ({}, """
        export default async function handler() {
          return Response.json({ errors: { email: ["is taken"] } }, { status: 422 });
        }"""),
    "patched": ({}, """
        export default async function handler() {
          Response.prototype.arrayBuffer = async () => new TextEncoder().encode("forged").buffer;
          Object.defineProperty(Response.prototype, "status", { get: () => 299 });
          return new Response("genuine", { status: 200, headers: { "content-type": "text/plain" } });
        }"""),
    "echo": ({"route": "/echo/{kind}", "secrets": []}, """
        export default async function handler(input, ctx) {
          const r = ctx.request;
          ctx.log.info("saw request", { auth: r.headers["authorization"] ?? null, session: r.cookies.session ?? null });
          const bytes = await r.body.bytes();
          bytes[0] = 99;  // a copy: the next read is unchanged
          const again = await r.body.bytes();
          return { input, method: r.method, path: r.path, route: r.route, params: r.params, query: r.query,
                   headers: r.headers, cookies: r.cookies, text: await r.body.text(), length: r.body.length,
                   read: bytes.length, first: Array.from(again.slice(0, 4)) };
        }"""),
    "calls_created": ({"invokes": ["created"]}, """
        export default async function handler(input, ctx) {
          const inner = await ctx.function.invoke("created", { name: "nested" });
          return { inner, request: ctx.request.method };
        }"""),
    "nested_request": ({"invokes": ["echo_request"]}, """
        export default async function handler(input, ctx) {
          return await ctx.function.invoke("echo_request", {});
        }"""),
    "echo_request": ({"internal": True}, """
        export default async function handler(input, ctx) { return { hasRequest: ctx.request !== undefined }; }"""),
}


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = write_project(tmp_path_factory.mktemp("responses"),
                         {"name": "responses", "limits": {"max_body_bytes": 4096}}, FUNCTIONS)
    harness = Harness(root)
    yield harness
    harness.close()


def send(h: Harness, method: str, path: str, body: bytes = b"", headers: tuple = (), query: str = "") -> HttpResponse:
    return h.run(h.stack.gateway.handle(HttpRequest(method, path, raw_query=query, headers=headers, body=body)))


def all_headers(response: HttpResponse, name: str) -> list[str]:
    return [v for k, v in response.headers if k == name]


def test_201_with_location_cookies_and_repeated_headers(h):
    response = send(h, "POST", "/things", b'{"name":"Ada"}', (("content-type", "application/json"),))
    assert response.status == 201
    assert response.json() == {"id": 7, "name": "Ada"}
    assert response.header("location") == "/things/7"
    assert all_headers(response, "set-cookie") == ["a=1; Path=/; HttpOnly", "b=2; Path=/"]
    assert response.header("x-multi") == "one, two"
    assert len(response.header("x-request-id")) == 32


def test_204_has_no_body_and_a_request_id(h):
    response = send(h, "DELETE", "/things/3")
    assert response.status == 204 and response.body == b""
    assert response.header("x-request-id")


def test_redirect(h):
    response = send(h, "GET", "/moved")
    assert response.status == 302
    assert response.header("location") == "http://127.0.0.1/elsewhere"


def test_text_body_keeps_its_content_type(h):
    response = send(h, "GET", "/csv")
    assert response.status == 200
    assert response.header("content-type") == "text/csv; charset=utf-8"
    assert response.body == b"a,b\n1,2\n"


def test_binary_body_round_trips_through_base64(h):
    response = send(h, "GET", "/png")
    assert response.header("content-type") == "image/png"
    assert response.body == bytes(i % 256 for i in range(300))


def test_binary_body_is_base64_in_the_lambda_proxy_result(h):
    event_result = h.run(h.stack.pipeline.handle({
        "version": "2.0", "routeKey": "GET /png", "rawPath": "/png", "rawQueryString": "", "headers": {},
        "requestContext": {"http": {"method": "GET", "path": "/png", "sourceIp": "127.0.0.1"}},
        "isBase64Encoded": False}))
    assert event_result["isBase64Encoded"] is True
    assert base64.b64decode(event_result["body"]) == bytes(i % 256 for i in range(300))
    assert event_result["headers"]["x-request-id"]


def test_cookies_go_to_the_cookies_array_of_the_proxy_result(h):
    result = h.run(h.stack.pipeline.handle({
        "version": "2.0", "routeKey": "POST /things", "rawPath": "/things", "rawQueryString": "",
        "headers": {"content-type": "application/json"}, "body": "{}", "isBase64Encoded": False,
        "requestContext": {"http": {"method": "POST", "path": "/things", "sourceIp": "127.0.0.1"}}}))
    assert result["statusCode"] == 201
    assert result["cookies"] == ["a=1; Path=/; HttpOnly", "b=2; Path=/"]
    assert "set-cookie" not in result["headers"]


def test_an_api_with_its_own_error_format(h):
    response = send(h, "POST", "/own_error", b"{}", (("content-type", "application/json"),))
    assert response.status == 422
    assert response.json() == {"errors": {"email": ["is taken"]}}


def test_patched_response_prototype_cannot_change_what_is_sent(h):
    response = send(h, "POST", "/patched", b"{}", (("content-type", "application/json"),))
    assert response.status == 200
    assert response.body == b"genuine"


def test_ctx_function_invoke_of_a_response_gives_its_plain_shape(h):
    response = send(h, "POST", "/calls_created", b"{}", (("content-type", "application/json"),))
    assert response.status == 200, response.body
    inner = response.json()["inner"]
    assert inner["status"] == 201 and json.loads(inner["body"]) == {"id": 7, "name": "nested"}
    assert ["location", "/things/7"] in inner["headers"]
    assert response.json()["request"] == "POST"


def test_a_nested_invocation_has_no_request_of_its_own(h):
    response = send(h, "POST", "/nested_request", b"{}", (("content-type", "application/json"),))
    assert response.status == 200, response.body
    assert response.json() == {"hasRequest": False}


def test_ctx_request_shows_the_request_as_sent(h):
    response = send(h, "POST", "/echo/json", b'{"a": 1}',
                    (("content-type", "application/json"), ("X-Custom", "Yes"), ("cookie", "session=abc123; theme=dark")),
                    query="tag=a&tag=b&page=2&empty=")
    assert response.status == 200, response.body
    body = response.json()
    assert body["method"] == "POST" and body["path"] == "/echo/json" and body["route"] == "/echo/{kind}"
    assert body["params"] == {"kind": "json"}
    assert body["query"] == {"tag": ["a", "b"], "page": ["2"], "empty": [""]}
    assert body["headers"]["x-custom"] == "Yes"
    assert body["cookies"] == {"session": "abc123", "theme": "dark"}
    assert body["text"] == '{"a": 1}'
    assert body["input"] == {"a": 1, "tag": "a,b", "page": "2", "empty": "", "kind": "json"}


def test_a_form_post_is_parsed_into_input_and_readable_raw(h):
    raw = b"amount=12.50&item=a&item=b&note=hi+there"
    response = send(h, "POST", "/echo/form", raw, (("content-type", "application/x-www-form-urlencoded"),))
    assert response.status == 200, response.body
    body = response.json()
    assert body["text"] == raw.decode()
    assert body["input"]["amount"] == "12.50"
    assert body["input"]["item"] == ["a", "b"]
    assert body["input"]["note"] == "hi there"


def test_a_binary_body_is_not_parsed_and_its_bytes_are_readable(h):
    raw = bytes([0, 255, 1, 254]) + b"tail"
    response = send(h, "POST", "/echo/bin", raw, (("content-type", "application/octet-stream"),))
    assert response.status == 200, response.body
    body = response.json()
    assert body["length"] == body["read"] == 8 and body["first"] == [0, 255, 1, 254]
    assert body["input"] == {"kind": "bin"}


def test_bad_json_is_still_400(h):
    response = send(h, "POST", "/echo/x", b"{nope", (("content-type", "application/json"),))
    assert response.status == 400 and response.json()["error"] == "invalid_json"


def test_credential_headers_are_visible_to_the_function_but_not_to_logs(h):
    token = "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.sig-value-123"
    response = send(h, "POST", "/echo/auth", b"{}",
                    (("content-type", "application/json"), ("authorization", token), ("cookie", "session=s3ss10nvalue")))
    body = response.json()
    assert body["headers"]["authorization"] == token
    trace = response.header("x-request-id")
    stored = json.dumps([log.fields for log in h.memory.logs if log.trace_id == trace]) + \
        json.dumps([s.attrs for s in h.memory.spans if s.trace_id == trace])
    assert "eyJhbGciOiJIUzI1NiJ9" not in stored and "s3ss10nvalue" not in stored
    assert "[redacted]" in stored
