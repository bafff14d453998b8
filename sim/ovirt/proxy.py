"""An HTTP proxy in front of the imageio daemon: the engine's ``proxy_url`` and the way
faults reach the data path.

The real engine runs its own imageio in proxy mode (port 54323) for clients that cannot reach
the host; this one forwards ``/images/<ticket>...`` to the host daemon the same way. When a
transfer has data-path faults, its ``transfer_url`` points here too, and the proxy applies
them per ticket: a bandwidth limit, a connection reset after N bytes of image data,
connection resets on the small requests (OPTIONS, extents), bursts of 5xx answers to range
reads, and expiring the ticket in imageio after N bytes of image data (so
the 403s clients then get are imageio's own), a byte of image data flipped, a checksum API
missing. Requests are forwarded one by one over one upstream
keep-alive connection per client connection, so clients see imageio's own answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from shared.devservices import free_port
from sim.certs import ServerCert

CHUNK = 256 * 1024


@dataclass
class Rules:
    """Faults for one ticket; counters change as the faults fire."""

    bytes_per_second: int = 0
    reset_after_bytes: int = 0
    resets_left: int = 0
    errors_left: int = 0
    error_status: int = 503
    corrupt_after_bytes: int = 0
    """Flip one byte of the image data served past this many bytes (0: never); once."""
    no_checksum: bool = False
    """Answer 404 to the checksum API (``/checksum``, ``/checksum/algorithms``)."""
    expire_after_bytes: int = 0
    expire: Callable[[], Awaitable[None]] | None = None  # expires the ticket in imageio
    expired: bool = False
    # OPTIONS / extents requests still to reset, by kind ("OPTIONS", "extents")
    control_resets: dict[str, int] = field(default_factory=dict)
    served: int = 0
    started: float = field(default_factory=time.monotonic)


class ImageProxy:
    def __init__(self, upstream_port: int, cert: ServerCert) -> None:
        self.upstream_port = upstream_port
        self.cert = cert
        self.rules: dict[str, Rules] = {}
        self.port = 0
        self._server: asyncio.Server | None = None
        self._upstream_ctx = ssl.create_default_context(cafile=str(cert.ca_file))
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def start(self) -> None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert.cert_file), str(self.cert.key_file))
        self.port = free_port()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=ctx)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
                }
                body = b""
                if int(headers.get("content-length", "0")):
                    body = await reader.readexactly(int(headers["content-length"]))
                ticket = path.split("?")[0].split("/")[2] if path.startswith("/images/") else ""
                rules = self.rules.get(ticket)
                if rules and rules.errors_left > 0 and method == "GET" and "range" in headers:
                    rules.errors_left -= 1
                    msg = b"Injected server error\n"
                    writer.write(
                        f"HTTP/1.1 {rules.error_status} Service Unavailable\r\n"
                        f"Content-Length: {len(msg)}\r\nContent-Type: text/plain\r\n\r\n".encode()
                        + msg
                    )
                    await writer.drain()
                    continue
                if rules and rules.no_checksum and _control_kind(method, path) == "checksum":
                    msg = b"No handler for this path\n"  # what an imageio without it says
                    writer.write(
                        f"HTTP/1.1 404 Not Found\r\nContent-Length: {len(msg)}\r\n"
                        "Content-Type: text/plain\r\n\r\n".encode()
                        + msg
                    )
                    await writer.drain()
                    continue
                if rules and rules.expired and rules.expire:
                    # imageio re-extends a ticket by its timeout whenever an operation ends
                    # (Ticket.touch), so requests that were in flight would revive it:
                    # expire it again before each new request reaches imageio.
                    await rules.expire()
                if upstream is None:
                    upstream = await asyncio.open_connection(
                        "127.0.0.1", self.upstream_port, ssl=self._upstream_ctx
                    )
                up_r, up_w = upstream
                up_w.write(head + body)
                await up_w.drain()
                kind = _control_kind(method, path)
                if rules and kind and rules.control_resets.get(kind, 0) > 0:
                    # The request reached imageio (as on a real network, the reset may come
                    # after the server acted); the client gets no answer, or half of one.
                    rules.control_resets[kind] -= 1
                    if rules.control_resets[kind] % 2 == 0:
                        await self._relay(up_r, writer, None, method, cut=True)
                        await writer.drain()
                        await asyncio.sleep(0.05)  # the half answer leaves first
                    _reset(writer)
                    return
                # Only image data counts towards the byte-based faults (a reset or an
                # expiry "after N bytes"): OPTIONS and extents answers are not image data.
                data_rules = rules if method == "GET" and not kind else None
                if not await self._relay(up_r, writer, data_rules, method):
                    writer.transport.abort()
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            return
        finally:
            self._tasks.discard(task)
            for w in (writer, upstream[1] if upstream else None):
                if w is not None:
                    w.close()

    async def _relay(
        self,
        up: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        rules: Rules | None,
        method: str,
        cut: bool = False,
    ) -> bool:
        """Copy one response; False when a reset fault fired (the caller aborts). ``rules``
        is None unless the body is image data (a successful read), the only bytes the
        faults count. ``cut``: only the head and half of the body (the caller then resets
        the connection)."""
        head = await up.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        if lines[0].split(" ")[1:2] not in (["200"], ["206"]):
            rules = None  # an error answer (403, 416) carries no image data either
        length = 0
        for line in lines[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-length":
                length = int(value)
        writer.write(head)
        if cut:
            writer.write((await up.readexactly(length))[: length // 2])
            return False
        if method == "HEAD":
            await writer.drain()
            return True
        left = length
        while left > 0:
            data = await up.readexactly(min(CHUNK, left))
            left -= len(data)
            if rules is not None:
                before = rules.served
                rules.served += len(data)
                flip = rules.corrupt_after_bytes - 1 - before
                if rules.corrupt_after_bytes and 0 <= flip < len(data):
                    rules.corrupt_after_bytes = 0
                    data = data[:flip] + bytes([data[flip] ^ 0x5A]) + data[flip + 1 :]
                if rules.expire and not rules.expired and rules.served >= rules.expire_after_bytes:
                    # Requests already authorized finish; imageio refuses the next ones.
                    rules.expired = True
                    await rules.expire()
                if (
                    rules.resets_left > 0
                    and rules.reset_after_bytes
                    and rules.served >= rules.reset_after_bytes
                ):
                    rules.resets_left -= 1
                    rules.reset_after_bytes = 0
                    writer.write(data[: len(data) // 2])
                    return False
                if rules.bytes_per_second:
                    ahead = rules.served / rules.bytes_per_second - (
                        time.monotonic() - rules.started
                    )
                    if ahead > 0:
                        await asyncio.sleep(ahead)
            writer.write(data)
            await writer.drain()
        await writer.drain()
        return True


def _control_kind(method: str, path: str) -> str:
    """Which small request this is ("OPTIONS", "extents", "checksum"), or "" for anything
    else (a range read: image data)."""
    if method == "OPTIONS":
        return "OPTIONS"
    if method == "GET" and path.split("?")[0].endswith("/extents"):
        return "extents"
    if method == "GET" and "/checksum" in path.split("?")[0]:
        return "checksum"
    return ""


def _reset(writer: asyncio.StreamWriter) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), as a reset on the network does:
    the client's next read fails with ECONNRESET, not a clean end of stream."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
