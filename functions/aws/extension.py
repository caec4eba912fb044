"""An internal Lambda extension that writes a request's spans after its response has been sent.

Lambda freezes an execution environment when the runtime *and every registered
extension* have asked for their next event (Extensions API ``2020-01-01``, "Invoke
phase"). Before this module the HTTP entry wrote its spans to DynamoDB in the
handler's ``finally``, so every response waited for a ``BatchWriteItem``. Now a
thread of the runtime process registers as an *internal* extension during INIT
and, for every ``INVOKE`` event, waits for the handler of that request to finish,
writes the spans it left, and only then calls ``/extension/event/next``. The
runtime posts the response meanwhile, so the client gets it without waiting for
the write, and the environment is not frozen until the write is done.

What this promises, and the window that remains:

* *frozen*: never with spans pending. The Invoke phase ends only when this thread
  calls Next, after the flush (or after the store refused it, which the sink logs
  with a count, as before);
* *killed*: the Invoke phase, extension time included, is bounded by the function
  timeout. A timeout, an out-of-memory kill or a crash between the response and the
  end of the flush loses that request's spans, exactly as a kill during the old
  in-handler flush did (the response has just been sent this time). Internal
  extensions cannot register for ``SHUTDOWN`` (Lambda refuses it with
  ``ShutdownEventNotSupportedForInternalExtension``), so nothing is left for
  one: each Invoke phase writes everything it produced;
* *no Extensions API*: if registering fails, or the thread stops, :attr:`active`
  is false and the entry flushes in the handler, as before.

The thread waits for the handler at most until the invocation's deadline (less a
margin), so an event the runtime never handed to the handler cannot hold the
environment past its timeout; a handler that finishes after the thread gave up on
it is told so (:meth:`SpanFlushExtension.handler_done` returns False) and writes its
spans itself before returning, as without an extension.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

API_VERSION = "2020-01-01"
NAME = "flux-span-flush"
DEADLINE_MARGIN_S = 0.25  # leave the environment this much of the timeout to call Next after a late flush

_log = logging.getLogger("flux.aws.extension")


class ExtensionApiError(RuntimeError):
    """The Extensions API answered with an unexpected status (the environment is unusable for us)."""


class ExtensionsClient:
    """The three Extensions API calls an internal extension makes, over one kept-alive connection."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._connection: http.client.HTTPConnection | None = None

    def _call(self, method: str, path: str, *, body: bytes | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        if self._connection is None:
            self._connection = http.client.HTTPConnection(self.address)  # no timeout: Next blocks until an event
        try:
            self._connection.request(method, f"/{API_VERSION}/extension/{path}", body=body, headers=headers or {})
            response = self._connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        except (OSError, http.client.HTTPException):
            self._connection.close()
            self._connection = None
            raise

    def register(self, name: str, events: list[str]) -> str:
        """The extension identifier Lambda gives back (``Lambda-Extension-Identifier``)."""
        status, headers, body = self._call("POST", "register", body=json.dumps({"events": events}).encode(),
                                           headers={"Lambda-Extension-Name": name,
                                                    "Content-Type": "application/json"})
        identifier = {key.lower(): value for key, value in headers.items()}.get("lambda-extension-identifier")
        if status != 200 or not identifier:
            raise ExtensionApiError(f"register: {status} {body[:200]!r}")
        return identifier

    def next_event(self, identifier: str) -> dict[str, Any]:
        status, _, body = self._call("GET", "event/next", headers={"Lambda-Extension-Identifier": identifier})
        if status != 200:
            raise ExtensionApiError(f"event/next: {status} {body[:200]!r}")
        return json.loads(body)

    def exit_error(self, identifier: str, error_type: str, message: str) -> None:
        """Tell Lambda this extension is giving up, so it resets the environment instead of waiting on it."""
        self._call("POST", "exit/error", body=json.dumps({"errorMessage": message, "errorType": error_type}).encode(),
                   headers={"Lambda-Extension-Identifier": identifier,
                            "Lambda-Extension-Function-Error-Type": error_type})


class SpanFlushExtension:
    """Runs ``flush`` after each handler, inside the Invoke phase but after the response."""

    def __init__(self, client: ExtensionsClient, flush: Callable[[], None], *, name: str = NAME,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.flush = flush
        self.name = name
        self.clock = clock
        self.identifier: str | None = None
        self.active = False
        self.flushes = 0
        self._changed = threading.Condition()
        self._finished: list[str | None] = []   # handlers done that this thread has not matched yet
        self._abandoned: set[str] = set()       # requests it stopped waiting for (deadline)
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Register (must happen in INIT, before the runtime's first Next) and start the thread."""
        try:
            self.identifier = self.client.register(self.name, ["INVOKE"])
        except (OSError, http.client.HTTPException, ExtensionApiError, ValueError):
            _log.exception("extension: cannot register; spans are written before each response instead")
            return False
        self.active = True
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return True

    def handler_done(self, request_id: str | None) -> bool:
        """Called by the entry when its handler returns or raises (the response is about to be posted).

        False when this thread already gave up waiting for that request (its deadline was near): the
        caller must then write the spans itself, or they would sit in memory while Lambda freezes us.
        """
        with self._changed:
            if request_id is not None and request_id in self._abandoned:
                self._abandoned.discard(request_id)
                return False
            self._finished.append(request_id)
            self._changed.notify_all()
            return True

    def _run(self) -> None:
        assert self.identifier is not None
        try:
            while True:
                event = self.client.next_event(self.identifier)
                if event.get("eventType") != "INVOKE":
                    continue  # internal extensions only ever get INVOKE
                self._wait_for_handler(str(event.get("requestId") or ""), float(event.get("deadlineMs") or 0))
                self._flush()
        except Exception as exc:  # noqa: BLE001 - the thread must say why it stopped, then let the handler flush
            self.active = False
            _log.exception("extension: stopped; spans are written before each response from now on")
            self._flush()
            try:
                self.client.exit_error(self.identifier, "Extension.Crash", repr(exc)[:500])
            except (OSError, http.client.HTTPException):
                _log.warning("extension: could not report its exit to Lambda")

    def _wait_for_handler(self, request_id: str, deadline_ms: float) -> None:
        """Until the handler of ``request_id`` is done, or the invocation's deadline is near."""
        with self._changed:
            while True:
                if request_id in self._finished or None in self._finished:
                    self._finished.clear()  # one event at a time: older ids are of abandoned requests
                    return
                remaining = deadline_ms / 1000 - self.clock() - DEADLINE_MARGIN_S
                if remaining <= 0:
                    self._abandoned.add(request_id)  # under the lock: handler_done now flushes inline
                    _log.warning("extension: handler of %s not done before its deadline; it writes its own spans",
                                 request_id)
                    return
                self._changed.wait(remaining)

    def _flush(self) -> None:
        try:
            self.flush()
            self.flushes += 1
        except Exception:  # noqa: BLE001 - a failed write is logged by the sink; the thread goes on
            _log.exception("extension: span flush failed")
