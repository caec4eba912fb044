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

One server per execution environment, so an environment only ever sees its own events and
exactly one event is outstanding at a time (Lambda never sends a second event to an
environment that has not answered the first).
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


class QuietServer(ThreadingHTTPServer):
    """A threaded server that does not print a traceback when a killed sandbox drops its connection."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class RuntimeApi:
    """The Runtime API endpoint of one execution environment (``AWS_LAMBDA_RUNTIME_API``)."""

    def __init__(self, function_arn: str) -> None:
        self.function_arn = function_arn
        self._events: queue.Queue[Invocation | None] = queue.Queue()
        self._pending: dict[str, Invocation] = {}
        self._lock = threading.Lock()
        self.init_done = threading.Event()
        self.init_error: dict | None = None
        self.init_error_event = threading.Event()
        self.polls = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

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
                if self.path != f"{PREFIX}/invocation/next":
                    self._reply(404, {"errorMessage": "not found", "errorType": "InvalidRequest"})
                    return
                api.polls += 1
                api.init_done.set()
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

            def do_POST(self) -> None:
                body = self._body()
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
        with self._lock:
            self._pending[request_id] = invocation
        self._events.put(invocation)
        return invocation

    def close(self) -> None:
        self._events.put(None)
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
