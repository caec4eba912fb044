"""RDS Proxy in front of the emulated cluster: TLS, and only the startup parameters RDS Proxy accepts.

From the RDS Proxy documentation (limitations for PostgreSQL): a client's startup
message may carry ``user``, ``database``, ``application_name`` and ``client_encoding``;
any other parameter (``options``, ``statement_timeout``, ``search_path``, ...) makes the
proxy refuse the connection with ``Feature not supported: RDS Proxy currently doesn't
support the option <name>.``. With ``RequireTLS`` a client that does not negotiate TLS
is refused too. Client authentication is per secret (the proxy's ``Auth`` list): a user
none of its secrets names is refused with RDS Proxy's text (``This RDS Proxy has no
credentials for the role <user>. Check the credentials for this role and try again.``, from
the RDS Proxy troubleshooting guide). Accepted connections are relayed byte for byte to the
cluster (the cluster authenticates the user with the secret's password, as the proxy does
with the secret's copy; a role the secret names but the database lacks fails there).

The same front with ``rds_proxy=False`` is the cluster endpoint of a stage without a proxy
(a dev-profile stack): Aurora PostgreSQL 15 and later set ``rds.force_ssl`` to 1 by default,
so a client that does not negotiate TLS is refused with PostgreSQL's own text (``no
pg_hba.conf entry for host ..., no encryption``); every startup parameter and user is
accepted (the cluster itself authenticates them).

What is not modelled: connection pinning (a session that uses named prepared
statements or ``SET`` keeps its backend; here every client has its own backend
anyway) and the proxy's connection pool limits.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import struct
import threading
from pathlib import Path

ALLOWED = ("user", "database", "application_name", "client_encoding")
SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST, PROTOCOL_3 = 80877103, 80877104, 80877102, 196608


def _self_signed(workdir: Path) -> ssl.SSLContext:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "proxy.rds.emulated")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2)).sign(key, hashes.SHA256()))
    cert_path, key_path = workdir / "proxy.crt", workdir / "proxy.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


def error_response(message: str, code: str = "0A000") -> bytes:
    fields = b"SFATAL\0VFATAL\0C" + code.encode() + b"\0M" + message.encode() + b"\0\0"
    return b"E" + struct.pack("!I", len(fields) + 4) + fields


def startup_parameters(body: bytes) -> dict[str, str]:
    parts = body.split(b"\0")
    pairs = [p.decode() for p in parts]
    return {pairs[i]: pairs[i + 1] for i in range(0, len(pairs) - 1, 2) if pairs[i]}


class RdsProxy:
    """A TCP front on 127.0.0.1 enforcing RDS Proxy's startup rules (or, with ``rds_proxy=False``, only the
    cluster endpoint's TLS requirement), relaying to ``upstream_port``."""

    def __init__(self, workdir: Path, *, upstream_port: int, port: int, require_tls: bool = True,
                 users: set[str] | None = None, rds_proxy: bool = True) -> None:
        self.upstream_port, self.port, self.require_tls = upstream_port, port, require_tls
        self.rds_proxy = rds_proxy
        self.name = "rds-proxy" if rds_proxy else "cluster-endpoint"
        self.users = users    # the usernames of the proxy's secrets; None: not known (yet), nobody is refused
        self.refused: list[str] = []      # what was refused, for the tests and FINDINGS
        self.accepted = 0
        self._tls = _self_signed(workdir)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"the {self.name} front did not start")

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls = False
        while True:
            length, code = struct.unpack("!II", await reader.readexactly(8))
            body = await reader.readexactly(length - 8)
            if code == GSSENC_REQUEST:
                writer.write(b"N")
                await writer.drain()
                continue
            if code == SSL_REQUEST:
                writer.write(b"S")
                await writer.drain()
                await writer.start_tls(self._tls)
                tls = True
                continue
            break
        if code == CANCEL_REQUEST:
            await self._relay(reader, writer, struct.pack("!II", length, code) + body)
            return
        if code != PROTOCOL_3:
            writer.write(error_response(f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}", "08P01"))
            return
        params = startup_parameters(body)
        if self.require_tls and not tls:
            self.refused.append(f"no TLS: {params.get('user', '')}")
            writer.write(error_response(self._no_tls_message(params), "28000"))
            return
        if not self.rds_proxy:
            self.accepted += 1
            await self._relay(reader, writer, struct.pack("!II", length, code) + body)
            return
        for name in params:
            if name not in ALLOWED:
                self.refused.append(name)
                writer.write(error_response(f"Feature not supported: RDS Proxy currently doesn't support the option "
                                            f"{name}."))
                await writer.drain()
                return
        user = params.get("user", "")
        if self.users is not None and user not in self.users:
            self.refused.append(f"user {user}")
            writer.write(error_response(f"This RDS Proxy has no credentials for the role {user}. Check the "
                                        "credentials for this role and try again.", "28000"))
            await writer.drain()
            return
        self.accepted += 1
        await self._relay(reader, writer, struct.pack("!II", length, code) + body)

    def _no_tls_message(self, params: dict[str, str]) -> str:
        if self.rds_proxy:
            return "This RDS Proxy requires TLS connections"
        user = params.get("user", "")
        return (f'no pg_hba.conf entry for host "127.0.0.1", user "{user}", database '
                f'"{params.get("database", user)}", no encryption')

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: bytes) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        up_writer.write(first)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

    def close(self) -> None:
        def stop() -> None:
            self._server.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(5)
