"""The Lambda Runtime API (``2018-06-01``) that one emulated execution environment polls.

Modelled on the documented interface a custom runtime or ``awslambdaric`` talks to
(AWS Lambda Developer Guide, "Using the Lambda runtime API for custom runtimes"):

* ``GET  /2018-06-01/runtime/invocation/next`` blocks until there is an event and answers
  it with ``Lambda-Runtime-Aws-Request-Id``, ``Lambda-Runtime-Deadline-Ms``,
  ``Lambda-Runtime-Invoked-Function-Arn`` and ``Lambda-Runtime-Trace-Id``. The first call
  is what tells Lambda that the INIT phase is over.
* ``POST /2018-06-01/runtime/invocation/{id}/response`` — the result (202; an unknown id is
  400 ``InvalidRequestID``; more than 6 MB is 413 ``RequestEntityTooLarge``).
* ``POST /2018-06-01/runtime/invocation/{id}/error`` — an error document
  ``{errorMessage, errorType, stackTrace}`` with ``Lambda-Runtime-Function-Error-Type``.
* ``POST /2018-06-01/runtime/init/error`` — INIT failed; the environment is discarded.

And the Extensions API (``2020-01-01``, Developer Guide "Lambda Extensions API") on the same
address, for *internal* extensions (threads of the runtime process; there is no
``/opt/extensions`` process here):

* ``POST /2020-01-01/extension/register`` with ``Lambda-Extension-Name`` and ``{"events": [...]}``
  → 200, ``Lambda-Extension-Identifier`` and ``{functionName, functionVersion, handler}``;
  only during INIT (after the runtime's first Next: 403 ``Extension.RegistrationClosed``);
  ``SHUTDOWN`` is refused for an internal extension (403
  ``ShutdownEventNotSupportedForInternalExtension``), any other event name too
  (``Extension.InvalidEventType``); no name: 403 ``Extension.InvalidExtensionName``; a name
  twice: 403 ``Extension.InvalidExtensionState``; an eleventh: 403 ``Extension.TooManyExtensions``;
* ``GET /2020-01-01/extension/event/next`` (``Lambda-Extension-Identifier``; missing: 403
  ``Extension.MissingHeader``, unknown: 403 ``Extension.UnknownExtensionIdentifier``) blocks
  until the next ``INVOKE`` event ``{eventType, deadlineMs, requestId, invokedFunctionArn, tracing}``,
  with ``Lambda-Extension-Event-Identifier``;
* ``POST /2020-01-01/extension/init/error`` and ``/exit/error`` (202): the environment is reset.

The lifecycle follows "Lambda execution environment lifecycle": INIT is over when the runtime
*and every registered extension* have called Next; an invoke's event goes to the runtime and
to every extension registered for ``INVOKE``; the Invoke phase (after which Lambda may freeze
the environment or send it the next event) ends only when the runtime and every extension
have called Next again. :meth:`RuntimeApi.wait_idle` is that condition; the time from the
runtime's Next to the last extension's Next is Lambda's ``PostRuntimeExtensionsDuration``.

One server per execution environment, so an environment only ever sees its own events and
exactly one event is outstanding at a time (Lambda never sends a second event to an
environment that has not answered the first, nor before its extensions are done).
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/2018-06-01/runtime"
EXTENSIONS = "/2020-01-01/extension"
MAX_EXTENSIONS = 10
MAX_RESPONSE_BYTES = 6 * 1024 * 1024  # synchronous invocation payload limit
_INVOCATION = re.compile(rf"^{PREFIX}/invocation/([^/]+)/(response|error)$")


@dataclass
class Invocation:
    """One event handed to the environment, and what it answered."""

    request_id: str
    payload: bytes
    deadline_ms: int
    function_arn: str
    trace_id: str
    done: threading.Event = field(default_factory=threading.Event)
    response: bytes | None = None
    error: dict | None = None
    error_type: str | None = None
    started: float = 0.0
    finished: float = 0.0
    runtime_next: float = 0.0   # the runtime asked for its next event (after answering this one)
    phase_ended: float = 0.0    # ... and so had every extension: the Invoke phase is over
    extensions: int = 0         # how many extensions were registered when it was sent

    @property
    def post_runtime_ms(self) -> float:
        """Lambda's ``PostRuntimeExtensionsDuration``: runtime Next to the last extension's Next."""
        if not self.extensions or not self.phase_ended or not self.runtime_next:
            return 0.0
        return max(0.0, self.phase_ended - self.runtime_next) * 1000


@dataclass
class Extension:
    """One registered (internal) extension."""

    identifier: str
    name: str
    invoke: bool
    events: queue.Queue[dict | None] = field(default_factory=queue.Queue)
    waiting: bool = False       # inside GET event/next: done with the current phase
    exit_error: str | None = None


class QuietServer(ThreadingHTTPServer):
    """A threaded server that does not print a traceback when a killed sandbox drops its connection."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class RuntimeApi:
    """The Runtime API endpoint of one execution environment (``AWS_LAMBDA_RUNTIME_API``)."""

    def __init__(self, function_arn: str, handler: str = "") -> None:
        self.function_arn = function_arn
        self.handler = handler
        self._events: queue.Queue[Invocation | None] = queue.Queue()
        self._pending: dict[str, Invocation] = {}
        self._lock = threading.Lock()
        self.init_done = threading.Event()
        self.init_error: dict | None = None
        self.init_error_event = threading.Event()
        self.polls = 0
        self.extensions: dict[str, Extension] = {}
        self.idle = threading.Event()         # the runtime and every extension wait in Next: phase over
        self.extension_failed = threading.Event()
        self._runtime_waiting = False
        self._outstanding: Invocation | None = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Lambda's Runtime API (Go) sets TCP_NODELAY; without it the body, written after the headers,
            # waits for the runtime's delayed ACK: ~40 ms on every event, an artifact no Lambda has.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:  # quiet: the container log is enough
                return

            def _reply(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def do_GET(self) -> None:
                if self.path == f"{EXTENSIONS}/event/next":
                    self._extension_next()
                    return
                if self.path != f"{PREFIX}/invocation/next":
                    self._reply(404, {"errorMessage": "not found", "errorType": "InvalidRequest"})
                    return
                with api._lock:
                    api.polls += 1
                    api._runtime_waiting = True
                    if api._outstanding is not None and api._outstanding.done.is_set():
                        api._outstanding.runtime_next = time.perf_counter()
                    api._settle()
                invocation = api._events.get()
                if invocation is None:  # shutting down: leave the runtime blocked as a frozen sandbox would be
                    self._reply(500, {"errorMessage": "environment shutting down", "errorType": "ShutDown"})
                    return
                invocation.started = time.perf_counter()
                data = invocation.payload
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Lambda-Runtime-Aws-Request-Id", invocation.request_id)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(invocation.deadline_ms))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", invocation.function_arn)
                self.send_header("Lambda-Runtime-Trace-Id", invocation.trace_id)
                self.end_headers()
                self.wfile.write(data)

            def _extension(self) -> Extension | None:
                identifier = self.headers.get("Lambda-Extension-Identifier")
                if not identifier:
                    self._reply(403, {"errorMessage": "Missing Lambda-Extension-Identifier header",
                                      "errorType": "Extension.MissingHeader"})
                    return None
                extension = api.extensions.get(identifier)
                if extension is None:
                    self._reply(403, {"errorMessage": "Unknown extension " + identifier,
                                      "errorType": "Extension.UnknownExtensionIdentifier"})
                return extension

            def _extension_next(self) -> None:
                extension = self._extension()
                if extension is None:
                    return
                with api._lock:
                    extension.waiting = True
                    api._settle()
                event = extension.events.get()
                if event is None:
                    self._reply(500, {"errorMessage": "environment shutting down", "errorType": "ShutDown"})
                    return
                self._reply(200, event, {"Lambda-Extension-Event-Identifier": str(uuid.uuid4())})

            def _extension_post(self, body: bytes) -> None:
                if self.path == f"{EXTENSIONS}/register":
                    status, answer, headers = api._register(self.headers.get("Lambda-Extension-Name") or "", body)
                    self._reply(status, answer, headers)
                    return
                if self.path not in (f"{EXTENSIONS}/init/error", f"{EXTENSIONS}/exit/error"):
                    self._reply(404, {"errorMessage": "not found", "errorType": "InvalidRequest"})
                    return
                extension = self._extension()
                if extension is None:
                    return
                extension.exit_error = self.headers.get("Lambda-Extension-Function-Error-Type") or "Unknown"
                api.extension_failed.set()
                self._reply(202, {"status": "OK"})

            def do_POST(self) -> None:
                body = self._body()
                if self.path.startswith(EXTENSIONS + "/"):
                    self._extension_post(body)
                    return
                if self.path == f"{PREFIX}/init/error":
                    api.init_error = _error_document(body, self.headers.get("Lambda-Runtime-Function-Error-Type"))
                    api.init_error_event.set()
                    self._reply(202, {"status": "OK"})
                    return
                match = _INVOCATION.match(self.path)
                if match is None:
                    self._reply(404, {"errorMessage": "not found", "errorType": "InvalidRequest"})
                    return
                with api._lock:
                    invocation = api._pending.pop(match.group(1), None)
                if invocation is None:
                    self._reply(400, {"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"})
                    return
                if match.group(2) == "response":
                    if len(body) > MAX_RESPONSE_BYTES:
                        invocation.error = {"errorMessage": f"Response payload size ({len(body)} bytes) exceeded "
                                                            f"maximum allowed payload size ({MAX_RESPONSE_BYTES} "
                                                            "bytes).", "errorType": "Function.ResponseSizeTooLarge"}
                        invocation.error_type = "Function.ResponseSizeTooLarge"
                        self._reply(413, {"errorMessage": "Exceeded maximum allowed payload size",
                                          "errorType": "RequestEntityTooLarge"})
                    else:
                        invocation.response = body
                        self._reply(202, {"status": "OK"})
                else:
                    error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
                    invocation.error = _error_document(body, error_type)
                    invocation.error_type = error_type or invocation.error.get("errorType")
                    self._reply(202, {"status": "OK"})
                invocation.finished = time.perf_counter()
                invocation.done.set()

        self._server = QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="runtime-api", daemon=True)
        self._thread.start()

    def _register(self, name: str, body: bytes) -> tuple[int, dict, dict[str, str]]:
        """The Register call of an internal extension: (status, body, headers)."""
        def refused(error_type: str, message: str) -> tuple[int, dict, dict[str, str]]:
            return 403, {"errorMessage": message, "errorType": error_type}, {}

        if not name:
            return refused("Extension.InvalidExtensionName", "Empty extension name")
        try:
            events = json.loads(body or b"{}").get("events") or []
        except (ValueError, AttributeError):
            return 400, {"errorMessage": "Invalid request body", "errorType": "InvalidRequestFormat"}, {}
        for event in events:
            if event == "SHUTDOWN":
                return refused("ShutdownEventNotSupportedForInternalExtension",
                               f"Failed to register {name}: internal extensions cannot register for SHUTDOWN")
            if event != "INVOKE":
                return refused("Extension.InvalidEventType", f"Failed to register {name}: event {event}")
        with self._lock:
            if self.polls:
                return refused("Extension.RegistrationClosed", "Extension registration closed already")
            if any(extension.name == name for extension in self.extensions.values()):
                return refused("Extension.InvalidExtensionState", "Extension with this name already registered")
            if len(self.extensions) >= MAX_EXTENSIONS:
                return refused("Extension.TooManyExtensions", "Too many extensions registered")
            identifier = str(uuid.uuid4())
            self.extensions[identifier] = Extension(identifier, name, "INVOKE" in events)
        function_name = self.function_arn.split(":function:")[-1]
        return 200, {"functionName": function_name, "functionVersion": "$LATEST",
                     "handler": self.handler}, {"Lambda-Extension-Identifier": identifier}

    def _settle(self) -> None:
        """Under the lock: is the current phase over (the runtime and every extension in Next)?"""
        if not (self._runtime_waiting and all(e.waiting for e in self.extensions.values())):
            self.idle.clear()
            return
        self.init_done.set()
        if self._outstanding is not None and self._outstanding.done.is_set():
            self._outstanding.phase_ended = time.perf_counter()
            self._outstanding = None
        if self._outstanding is None:
            self.idle.set()

    def wait_idle(self, timeout_s: float) -> bool:
        """Whether the last Invoke phase (extensions included) ended within ``timeout_s``."""
        return self.idle.wait(timeout_s)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def submit(self, payload: bytes, *, timeout_s: float, trace_id: str | None = None) -> Invocation:
        """Queue one event; the environment's next poll receives it."""
        request_id = str(uuid.uuid4())
        deadline_ms = int((time.time() + timeout_s) * 1000)
        trace = trace_id or f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};" \
                            "Sampled=0;Lineage=1:00000000:0"
        invocation = Invocation(request_id, payload, deadline_ms, self.function_arn, trace)
        event = {"eventType": "INVOKE", "deadlineMs": deadline_ms, "requestId": request_id,
                 "invokedFunctionArn": self.function_arn, "tracing": {"type": "X-Amzn-Trace-Id", "value": trace}}
        with self._lock:
            self._pending[request_id] = invocation
            self._outstanding = invocation
            invocation.extensions = len(self.extensions)
            self._runtime_waiting = False   # the event is the runtime's now, and each extension's
            for extension in self.extensions.values():
                if extension.invoke:
                    extension.waiting = False
                    extension.events.put(event)
            self.idle.clear()
        self._events.put(invocation)
        return invocation

    def close(self) -> None:
        self._events.put(None)
        for extension in self.extensions.values():
            extension.events.put(None)
        self._server.shutdown()
        self._server.server_close()


def _error_document(body: bytes, error_type: str | None) -> dict:
    try:
        document = json.loads(body or b"{}")
    except ValueError:
        document = {"errorMessage": body.decode(errors="replace")}
    if not isinstance(document, dict):
        document = {"errorMessage": str(document)}
    if error_type and "errorType" not in document:
        document["errorType"] = error_type
    return document
