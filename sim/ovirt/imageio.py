"""A real ovirt-imageio daemon, run without systemd or vdsm, and its ticket control socket.

The engine simulator gives it tickets exactly as vdsm does on a host: ``PUT /tickets/<id>``
on the control socket with the image URL (``nbd:unix:<socket>`` served by qemu-nbd, so the
extents clients see are real), ``PATCH`` to extend or expire, ``DELETE`` to cancel.
``GET`` returns the ticket's ``transferred`` bytes and ``idle_time``, which the engine uses
for its inactivity timeout and the "ticket expires mid-transfer" fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from shared.devservices import free_port
from sim.certs import ServerCert
from sim.ovirt import children

CONFIG = """\
[daemon]
run_dir = {run_dir}
drop_privileges = false
systemd_enable = false
max_connections = 8

[tls]
enable = {tls}
key_file = {key_file}
cert_file = {cert_file}
ca_file = {ca_file}

[remote]
host = 127.0.0.1
port = {port}

[local]
enable = false

[control]
transport = unix
socket = {control}
remove_timeout = 5

[profile]
filename = {run_dir}/profile

[handlers]
keys = stderr

[logger_root]
handlers = stderr
level = {level}
"""


def _imageio_program() -> str:
    """The daemon installed next to this Python (a venv need not be on PATH)."""
    local = Path(sys.executable).parent / "ovirt-imageio"
    found = str(local) if local.exists() else shutil.which("ovirt-imageio")
    if found is None:
        raise ImageioError("ovirt-imageio is not installed: run `make setup`")
    return found


class ImageioError(RuntimeError):
    """The daemon refused a control request or did not start."""


class ImageioDaemon:
    """One ``ovirt-imageio`` process, as on an oVirt host (port 54322 there)."""

    def __init__(self, workdir: Path, cert: ServerCert | None, level: str = "WARNING") -> None:
        self.workdir = workdir
        self.cert = cert
        self.level = level
        self.port = 0
        self.control = workdir / "control.sock"
        self.log = workdir / "imageio.log"
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.cert else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def start(self, within: float = 30) -> None:
        conf_d = self.workdir / "conf.d"
        conf_d.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):  # a free port is only free while we look
            self.port = free_port()
            (conf_d / "99-local.conf").write_text(
                CONFIG.format(
                    run_dir=self.workdir,
                    tls="true" if self.cert else "false",
                    key_file=self.cert.key_file if self.cert else "",
                    cert_file=self.cert.cert_file if self.cert else "",
                    ca_file=self.cert.ca_file if self.cert else "",
                    port=self.port,
                    control=self.control,
                    level=self.level,
                )
            )
            self.control.unlink(missing_ok=True)
            self._process = await children.spawn(
                [_imageio_program(), "--conf-dir", str(self.workdir)], self.log
            )
            deadline = time.monotonic() + within
            while time.monotonic() < deadline:
                if self._process.returncode is not None:
                    break
                if self.control.exists() and await self._listening():
                    return
                await asyncio.sleep(0.1)
            await children.stop(self._process)
            if "Address already in use" not in children.log_tail(self.log) or attempt == 2:
                break
        raise ImageioError(
            f"ovirt-imageio did not start within {within} s; its log:\n"
            + children.log_tail(self.log)
        )

    async def _listening(self) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def stop(self) -> None:
        if self._process is not None:
            await children.stop(self._process)

    async def _control(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, bytes]:
        reader, writer = await asyncio.open_unix_connection(str(self.control))
        try:
            data = json.dumps(body).encode() if body is not None else b""
            writer.write(
                f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                + data
            )
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        head, _, payload = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, payload

    async def add_ticket(
        self,
        ticket_id: str,
        *,
        size: int,
        url: str,
        transfer_id: str,
        timeout: int,
        inactivity_timeout: int,
        ops: tuple[str, ...] = ("read",),
        dirty: bool = False,
    ) -> None:
        """``dirty``: the ticket serves ``extents?context=dirty`` (an incremental backup's
        transfer; the URL must be an NBD export with exactly one dirty bitmap)."""
        ticket = {
            "uuid": ticket_id,
            "size": size,
            "url": url,
            "ops": list(ops),
            "timeout": timeout,
            "inactivity_timeout": inactivity_timeout,
            "transfer_id": transfer_id,
            "sparse": True,
        }
        if dirty:
            ticket["dirty"] = True
        status, payload = await self._control("PUT", f"/tickets/{ticket_id}", ticket)
        if status != 200:
            raise ImageioError(f"ticket {ticket_id} refused ({status}): {payload[:500]!r}")

    async def extend_ticket(self, ticket_id: str, timeout: int) -> None:
        """``timeout=0`` expires the ticket now: every later request gets 403."""
        await self._control("PATCH", f"/tickets/{ticket_id}", {"timeout": timeout})

    async def remove_ticket(self, ticket_id: str) -> None:
        await self._control("DELETE", f"/tickets/{ticket_id}")

    async def ticket_info(self, ticket_id: str) -> dict[str, Any] | None:
        status, payload = await self._control("GET", f"/tickets/{ticket_id}")
        if status != 200:
            return None
        info: dict[str, Any] = json.loads(payload)
        return info
