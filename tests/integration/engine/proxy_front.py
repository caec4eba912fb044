"""A TCP front to Postgres that enforces RDS Proxy's startup rules, for executor tests.

RDS Proxy accepts only ``user``, ``database``, ``application_name`` and
``client_encoding`` in the startup packet and refuses anything else (libpq's
``options`` included) with ``Feature not supported: RDS Proxy currently doesn't
support the option ...``. This front answers SSL and GSS requests with "no",
checks the startup packet the same way, and otherwise pipes bytes both ways. It
runs on its own thread and event loop so synchronous tests and the engine's own
loop can both use it.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from typing import Any

ALLOWED = frozenset({"user", "database", "application_name", "client_encoding"})
_SSL_REQUEST = 80877103
_GSS_REQUEST = 80877104


def _error(message: str) -> bytes:
    fields = b"SFATAL\0" + b"VFATAL\0" + b"C0A000\0" + b"M" + message.encode() + b"\0" + b"\0"
    return b"E" + struct.pack("!I", len(fields) + 4) + fields


class ProxyFront:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.refused: list[str] = []
        self.startups: list[dict[str, str]] = []
        self._loop = asyncio.new_event_loop()
        self._server: Any = None
        self.port = 0
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> ProxyFront:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop)
        self._server = future.result(5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                length, code = struct.unpack("!II", await reader.readexactly(8))
                if code in (_SSL_REQUEST, _GSS_REQUEST):
                    writer.write(b"N")
                    await writer.drain()
                    continue
                break
            body = await reader.readexactly(length - 8)
            parts = body.split(b"\0")
            params = {parts[i].decode(): parts[i + 1].decode() for i in range(0, len(parts) - 2, 2) if parts[i]}
            self.startups.append(params)
            unsupported = sorted(set(params) - ALLOWED)
            if unsupported:
                self.refused.append(unsupported[0])
                writer.write(_error("Feature not supported: RDS Proxy currently doesn't support the option "
                                    f"{unsupported[0]}."))
                await writer.drain()
                return
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            up_writer.write(struct.pack("!II", length, code) + body)
            await up_writer.drain()
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except ConnectionError:
        pass
    finally:
        sink.close()
