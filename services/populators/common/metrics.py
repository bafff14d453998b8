"""Progress and the ``/metrics`` endpoint every populator pod serves (TLS, self-signed).

Forklift's controller scrapes each pod's ``metrics`` port (8443) every few seconds and reads
``<name>{ownerUID="<pvc uid>"} <percent>`` with a regex; Hoist's progress service reads the
byte counters too. The populator updates ``Progress`` from its copy threads (plain integer
adds under a lock) and the server renders it on each scrape.

Usage::

    progress = Progress(metric="ovirt_progress", owner_uid=args.owner_uid)
    server = await MetricsServer.start(progress, args.metrics_port)
    progress.set_total(data_bytes); progress.add(n) ...; progress.done()
    await server.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import threading
from collections.abc import AsyncIterator

from services.populators.common.selfsigned import self_signed
from shared.populator import render_metrics

log = logging.getLogger(__name__)


class Progress:
    def __init__(self, metric: str, owner_uid: str) -> None:
        self.metric = metric
        self.owner_uid = owner_uid
        self.total = 0
        self.transferred = 0
        self.finished = False
        self._lock = threading.Lock()

    def set_total(self, total: int) -> None:
        self.total = total

    def add(self, n: int) -> None:
        with self._lock:
            self.transferred += n

    def done(self) -> None:
        self.finished = True

    @property
    def percent(self) -> int:
        """0-99 while copying (never "done" before the fsync), 100 only after ``done()``."""
        if self.finished:
            return 100
        if self.total <= 0:
            return 0
        return min(99, self.transferred * 100 // self.total)

    def render(self) -> str:
        """The ``/metrics`` page: the contract's (``shared.populator.render_metrics``), the
        very page the progress service and the controller parse."""
        return render_metrics(
            self.metric, self.owner_uid, self.percent, self.transferred, self.total
        )


def self_signed_context() -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate (as Forklift's pods use); made
    by ``selfsigned`` in ~10 ms, without importing ``cryptography`` (~70 ms of CPU).

    ``load_cert_chain`` wants a path, so the PEM goes to an anonymous in-memory file
    (``memfd``, opened as ``/proc/self/fd/N``): the private key never touches a disk, and
    the populator's start skips importing ``tempfile`` (~5 ms of CPU)."""
    cert_pem, key_pem = self_signed()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    fd = os.memfd_create("metrics-tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, cert_pem + key_pem)
        ctx.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    return ctx


IDLE_SECONDS = 60.0  # longer than any scrape interval (Forklift: 3 s, Hoist: 5 s)


class MetricsServer:
    def __init__(
        self,
        server: asyncio.Server,
        progress: Progress,
        connections: set[asyncio.Task[None]],
    ) -> None:
        self._server = server
        self.progress = progress
        self._connections = connections  # one task per open connection (``serve``)

    @property
    def port(self) -> int:
        return int(self._server.sockets[0].getsockname()[1])

    @classmethod
    async def start(
        cls,
        progress: Progress,
        port: int,
        host: str | None = None,
        context: ssl.SSLContext | None = None,
    ) -> MetricsServer:
        """Serve on `host`, else on the pod's own address when the pod spec passes it as
        `POD_IP` (downward API), else on every address. Binding the pod IP keeps two
        populators that share a network (the cluster simulator, hostNetwork pods) apart."""
        host = host or os.environ.get("POD_IP") or "0.0.0.0"  # noqa: S104 - a pod's port
        connections: set[asyncio.Task[None]] = set()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # Persistent connections (HTTP/1.1's default): a scraper that keeps its
            # connection pays the TLS handshake once per pod, not once per scrape, which is
            # most of a scrape's CPU on both sides. An idle connection is closed after
            # IDLE_SECONDS; a client asking for "Connection: close" gets it.
            task = asyncio.current_task()
            assert task is not None
            connections.add(task)
            try:
                await exchange(reader, writer)
            except asyncio.CancelledError:
                # ``stop`` cancels the connections still open. This task must end without
                # an exception: asyncio's stream callback calls ``task.exception()``, which
                # on a cancelled task raises and logs a traceback at every clean exit.
                pass
            finally:
                connections.discard(task)
                writer.close()

        async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(
                ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError
            ):
                while True:
                    request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_SECONDS)
                    line, _, head = request.partition(b"\r\n")
                    parts = line.split(b" ")
                    path = parts[1] if len(parts) >= 3 else b""
                    close = b"connection: close" in head.lower() or parts[-1] == b"HTTP/1.0"
                    if path.split(b"?")[0] == b"/metrics":
                        status, body = "200 OK", progress.render().encode()
                    else:
                        status, body = "404 Not Found", b"only /metrics here\n"
                    writer.write(
                        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n"
                        f"Content-Length: {len(body)}\r\n"
                        f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n".encode()
                        + body
                    )
                    await writer.drain()
                    if close:
                        break

        tls = context or self_signed_context()
        server = await asyncio.start_server(serve, host, port, ssl=tls, backlog=64)
        return cls(server, progress, connections)

    async def stop(self) -> None:
        """Stop listening, end the connections still open (a scraper's keep-alive one) and
        wait for their tasks: nothing is left for ``asyncio.run`` to cancel at exit."""
        self._server.close()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 2)


@contextlib.asynccontextmanager
async def serving(progress: Progress, port: int) -> AsyncIterator[MetricsServer]:
    """`/metrics` up for the whole copy (and its port logged: a test or a human may need it
    when the port was chosen freely), down however the copy ends."""
    server = await MetricsServer.start(progress, port)
    log.info("metrics on port %d", server.port)
    try:
        yield server
    finally:
        await server.stop()
