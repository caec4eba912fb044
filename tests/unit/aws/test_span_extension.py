"""The span-flush internal extension against the deployed tier's Runtime + Extensions API emulator.

The test plays the runtime (``/invocation/next`` and ``/response`` over HTTP, as awslambdaric
does) and checks the lifecycle the extension relies on: the response reaches the caller
before the flush, and the Invoke phase (after which Lambda may freeze the environment) does
not end until the flush is done.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from functions.aws import runtime_state
from functions.aws.deferred_sink import DeferredSink
from functions.aws.extension import ExtensionsClient, SpanFlushExtension
from functions.shared.spans import LogRecord, Span, SpanSink
from tests.deployed.harness.runtime_api import RuntimeApi

ARN = "arn:aws:lambda:us-east-1:123456789012:function:hello"


@pytest.fixture
def api() -> Iterator[RuntimeApi]:
    server = RuntimeApi(ARN, "functions.aws.entry_http.handler")
    yield server
    server.close()


def call(api: RuntimeApi, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(api.address, timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    answer = response.status, dict(response.getheaders()), response.read()
    connection.close()
    return answer


class Runtime:
    """The runtime's side: poll an event, run a handler, post the response."""

    def __init__(self, api: RuntimeApi) -> None:
        self.api = api
        self.events: list[tuple[str, bytes]] = []
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        status, headers, body = call(self.api, "GET", "/2018-06-01/runtime/invocation/next")
        if status == 200:
            self.events.append((headers["Lambda-Runtime-Aws-Request-Id"], body))

    def next_event(self) -> tuple[str, bytes]:
        self._thread.join(10)
        return self.events[-1]

    def respond(self, request_id: str, answer: bytes) -> None:
        status, _, _ = call(self.api, "POST", f"/2018-06-01/runtime/invocation/{request_id}/response", answer)
        assert status == 202
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()


class Context:
    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id


def test_spans_are_written_after_the_response_and_before_the_invoke_phase_ends(api: RuntimeApi) -> None:
    flushed = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def flush() -> None:
        release.wait(10)  # a slow DynamoDB write
        order.append("flush")
        flushed.set()

    extension = SpanFlushExtension(ExtensionsClient(api.address), flush)
    assert extension.start() and extension.active
    runtime = Runtime(api)
    assert api.init_done.wait(5), "INIT ends once the runtime and the extension both called Next"
    invocation = api.submit(b'{"n": 1}', timeout_s=10)
    request_id, _ = runtime.next_event()
    assert request_id == invocation.request_id
    extension.handler_done(request_id)
    runtime.respond(request_id, b'{"ok": true}')
    assert invocation.done.wait(5) and invocation.response == b'{"ok": true}'
    order.append("response")
    assert not api.wait_idle(0.3), "the environment must not be frozen while the flush is pending"
    release.set()
    assert flushed.wait(5)
    assert api.wait_idle(5), "the Invoke phase ends when the extension calls Next after its flush"
    assert order == ["response", "flush"]
    assert invocation.post_runtime_ms > 0
    assert extension.flushes == 1


def test_a_handler_done_before_the_extension_sees_its_event_is_not_lost(api: RuntimeApi) -> None:
    flushes: list[int] = []
    extension = SpanFlushExtension(ExtensionsClient(api.address), lambda: flushes.append(1))
    assert extension.start()
    runtime = Runtime(api)
    assert api.init_done.wait(5)
    for n in range(3):
        invocation = api.submit(json.dumps({"n": n}).encode(), timeout_s=10)
        request_id, _ = runtime.next_event()
        runtime.respond(request_id, b"{}")
        extension.handler_done(request_id)
        assert invocation.done.wait(5)
        assert api.wait_idle(5)
    assert len(flushes) == 3


def test_registration_follows_the_extensions_api(api: RuntimeApi) -> None:
    register = "/2020-01-01/extension/register"
    status, _, body = call(api, "POST", register, json.dumps({"events": ["INVOKE", "SHUTDOWN"]}).encode(),
                           {"Lambda-Extension-Name": "internal"})
    assert status == 403 and json.loads(body)["errorType"] == "ShutdownEventNotSupportedForInternalExtension"
    status, headers, body = call(api, "POST", register, json.dumps({"events": ["INVOKE"]}).encode(),
                                 {"Lambda-Extension-Name": "internal"})
    assert status == 200 and headers["Lambda-Extension-Identifier"]
    assert json.loads(body) == {"functionName": "hello", "functionVersion": "$LATEST",
                                "handler": "functions.aws.entry_http.handler"}
    status, _, body = call(api, "GET", "/2020-01-01/extension/event/next", headers={
        "Lambda-Extension-Identifier": "not-registered"})
    assert status == 403 and json.loads(body)["errorType"] == "Extension.UnknownExtensionIdentifier"
    Runtime(api)  # the runtime's first Next closes registration
    deadline = time.monotonic() + 5
    while not api.polls and time.monotonic() < deadline:
        time.sleep(0.01)
    status, _, body = call(api, "POST", register, b'{"events": ["INVOKE"]}', {"Lambda-Extension-Name": "late"})
    assert status == 403 and json.loads(body)["errorType"] == "Extension.RegistrationClosed"
    late = SpanFlushExtension(ExtensionsClient(api.address), lambda: None, name="late")
    assert not late.start() and not late.active


class Store(SpanSink):
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.spans: list[Span] = []
        self.logs: list[LogRecord] = []

    def write_spans(self, spans: Any) -> None:
        if self.fail:
            raise OSError("dynamodb down")
        self.spans.extend(spans)

    def write_logs(self, logs: Any) -> None:
        self.logs.extend(logs)


def span(name: str) -> Span:
    return Span(trace_id="t1", span_id=name, parent_span_id=None, kind="function", name=name, start_us=1,
                duration_us=2, status="ok", attrs={})


def test_the_deferred_sink_writes_nothing_until_flushed_and_counts_what_a_failing_store_drops() -> None:
    store = Store()
    sink = DeferredSink(store)
    sink.write_spans([span("a"), span("b")])
    sink.write_logs([LogRecord(trace_id="t1", span_id="a", ts_us=1, level="info", function="f", message="hi")])
    assert store.spans == [] and sink.pending == 3
    sink.flush()
    assert [s.span_id for s in store.spans] == ["a", "b"] and len(store.logs) == 1 and sink.pending == 0
    failing = DeferredSink(Store(fail=True))
    failing.write_spans([span("c")])
    failing.write_logs([LogRecord(trace_id="t1", span_id="c", ts_us=1, level="info", function="f", message="kept")])
    failing.flush()  # never raises
    assert failing.dropped == 1 and failing.inner.logs and failing.pending == 0  # type: ignore[attr-defined]


def test_without_an_active_extension_the_handler_flushes_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    flushed: list[int] = []
    done: list[str | None] = []

    class Sink:
        def flush(self) -> None:
            flushed.append(1)

    class Extension:
        active = True

        def handler_done(self, request_id: str | None) -> bool:
            done.append(request_id)
            return True

    state: Any = type("State", (), {"sink": Sink()})()
    monkeypatch.setattr(runtime_state, "_extension", None)
    runtime_state.finish(state, Context("r1"))
    assert flushed == [1] and done == []
    monkeypatch.setattr(runtime_state, "_extension", Extension())
    runtime_state.finish(state, Context("r2"))
    assert flushed == [1] and done == ["r2"]
    Extension.active = False  # the thread stopped: back to flushing in the handler
    runtime_state.finish(state, Context("r3"))
    assert flushed == [1, 1] and done == ["r2"]


def test_a_handler_whose_state_cannot_be_built_still_tells_the_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    """Otherwise the extension would hold the environment until the invocation's deadline."""
    from functions.aws import entry_http

    done: list[str | None] = []

    class Extension:
        active = True

        def handler_done(self, request_id: str | None) -> bool:
            done.append(request_id)
            return True

    def broken(role: str) -> Any:
        raise OSError("bundle not readable")

    monkeypatch.setattr(runtime_state, "_extension", Extension())
    monkeypatch.setattr(runtime_state, "state", broken)
    with pytest.raises(OSError):
        entry_http.handler({}, Context("r9"))
    assert done == ["r9"]


def test_a_handler_that_finishes_after_the_extension_gave_up_writes_its_own_spans(api: RuntimeApi,
                                                                                 monkeypatch: pytest.MonkeyPatch
                                                                                 ) -> None:
    flushes: list[str] = []
    extension = SpanFlushExtension(ExtensionsClient(api.address), lambda: flushes.append("extension"))
    assert extension.start()
    runtime = Runtime(api)
    assert api.init_done.wait(5)
    invocation = api.submit(b"{}", timeout_s=0.3)  # the deadline is inside the extension's margin already
    request_id, _ = runtime.next_event()
    assert api.wait_idle(0) is False
    deadline = time.monotonic() + 5
    while not flushes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert flushes == ["extension"], "it gave up waiting and went on to Next"

    class Sink:
        def flush(self) -> None:
            flushes.append("handler")

    state: Any = type("State", (), {"sink": Sink()})()
    monkeypatch.setattr(runtime_state, "_extension", extension)
    runtime_state.finish(state, Context(request_id))
    assert flushes == ["extension", "handler"], "the late handler's spans are written before it returns"
    runtime.respond(request_id, b"{}")
    assert invocation.done.wait(5) and api.wait_idle(5)
