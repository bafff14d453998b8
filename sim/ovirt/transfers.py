"""The engine's image transfers (``/imagetransfers``), as a host and the engine run them.

Transfer phases follow the engine: ``initializing`` -> ``transferring`` (ticket added) ->
``finalizing_success`` -> ``finished_success`` on finalize; ``cancelled_user`` ->
``finalizing_cleanup`` -> ``finished_cleanup`` on cancel; ``paused_system`` when setup fails
or the client stays idle past ``inactivity_timeout`` (the ticket is then removed). The disk
is ``locked`` while a transfer holds it.

The transfer's ``format`` picks the host's backend, as TransferDiskImageCommand does:
``raw`` is the NBD backend (the guest's view: a cold transfer reads the disk's image
through one qemu-nbd export per disk, kept between transfers); ``cow``, or no format, is the
FILE backend (imageio reads the volume's file as stored; the transfer reports the disk's
own format when none was asked). The engine refuses no format on a plain disk: ``cow`` on a
raw volume serves the raw file.

A transfer of a backup (``<backup id=..>``) reads that backup's export instead
(``sim/ovirt/backups.py``), always through NBD, with a ``dirty`` ticket for a disk copied
incrementally, so imageio serves ``extents?context=dirty``; the backup already locks the disk.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from typing import TYPE_CHECKING
from xml.etree import ElementTree as ET

from starlette.requests import Request
from starlette.responses import Response

from shared.devservices import free_port
from sim.ovirt import entities as m
from sim.ovirt import xmlapi as x
from sim.ovirt.images import NbdExport
from sim.ovirt.proxy import Rules
from sim.ovirt.scenario import Fault

if TYPE_CHECKING:
    from sim.ovirt.engine import Engine

XML = "application/xml"
FORMATS = ("raw", "cow")
PHASE_DELAY = 0.2  # seconds between automatic phase changes (the engine takes ~1-2 s)
TICKET_TIMEOUT = 3600
EVENT_TRANSFER_STARTED = 1031  # TRANSFER_IMAGE_INITIATED
EVENT_TRANSFER_DONE = 1032  # TRANSFER_IMAGE_SUCCEEDED
EVENT_TRANSFER_FAILED = 1033  # TRANSFER_IMAGE_FAILED
_DONE = (m.Phase.FINISHED_SUCCESS, m.Phase.FINISHED_CLEANUP, m.Phase.FINISHED_FAILURE)


def xml(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=XML)


def fault(status: int, reason: str, detail: str) -> Response:
    return xml(x.fault(reason, detail), status)


def refused(detail: str) -> Response:
    """A command the engine's validation refuses: 409 and its message in brackets."""
    return fault(409, "Operation Failed", f"[{detail}]")


class Transfers:
    def __init__(self, engine: Engine) -> None:
        self.e = engine
        self.exports: dict[str, NbdExport] = {}

    def faults_for(self, disk: m.Disk, kind: str) -> list[Fault]:
        return [f for f in self.e.faults if f.kind == kind and f.applies(disk)]

    async def export(self, disk: m.Disk) -> NbdExport:
        if disk.id not in self.exports:
            path = await self.e.image_path(disk.id)
            export = NbdExport(path, disk.image.fmt, self.e.workdir / "images" / f"{disk.id}.sock")
            await export.start()
            self.exports[disk.id] = export
        return self.exports[disk.id]

    async def release(self, disk_id: str) -> bool:
        """Let the guest writer have the image: stop the disk's idle cold export (the next
        transfer starts it again); False while a cold transfer of the disk runs."""
        busy = any(
            t.disk_id == disk_id and t.backup_id is None and t.phase not in _DONE
            for t in self.e.inv.transfers.values()
        )
        if busy:
            return False
        export = self.exports.pop(disk_id, None)
        if export is not None:
            await export.stop()
        return True

    async def stop(self) -> None:
        for export in self.exports.values():
            await export.stop()

    async def collection(self, request: Request) -> Response:
        if request.method == "GET":
            items = (x.transfer(t) for t in self.e.inv.transfers.values())
            return xml(x.collection("image_transfers", items))
        try:
            body = ET.fromstring(await request.body())  # noqa: S314 (a test simulator)
        except ET.ParseError as exc:
            return fault(400, "Bad Request", f"malformed XML: {exc}")
        ref = body.find("disk")
        if ref is None:
            ref = body.find("image")
        disk_id = ref.get("id") if ref is not None else None
        disk = self.e.inv.disks.get(disk_id or "")
        if disk is None:
            return fault(404, "Not Found", f"Entity not found: disk {disk_id}")
        direction = body.findtext("direction", "upload")
        if direction != "download":
            return fault(400, "Bad Request", "this engine simulates downloads only")
        fmt = body.findtext("format")
        if fmt is not None and fmt not in FORMATS:
            return fault(400, "Invalid value", f"[Value '{fmt}' of format is not one of raw, cow]")
        backup_ref = body.find("backup")
        backup_id = backup_ref.get("id") if backup_ref is not None else None
        if backup_id is not None:
            problem = self.e.backups.transfer_problem(backup_id, disk, fmt)
            if problem:
                return refused(f"Cannot transfer Virtual Disk. {problem}")
        else:
            cold = self._cold_problem(disk)
            if cold is not None:
                return cold
        timeout = int(body.findtext("inactivity_timeout") or 60)
        transfer = m.Transfer(
            id=str(uuid.uuid4()),
            disk_id=disk.id,
            host_id=next(iter(self.e.inv.hosts)),
            inactivity_timeout=timeout,
            backup_id=backup_id,
            fmt=fmt or disk.format,
            backend="nbd" if fmt == "raw" or backup_id is not None else "file",
        )
        self.e.inv.transfers[transfer.id] = transfer
        disk.status = "locked"
        self.e.changes.disk_events(
            EVENT_TRANSFER_STARTED, f"Image Download with disk {disk.name} was initiated", disk
        )
        self.e.spawn(self._begin(transfer, disk))
        return xml(x.document(x.transfer(transfer)), 201)

    def _cold_problem(self, disk: m.Disk) -> Response | None:
        until = self.e.locked_until.get(disk.id)
        if until is not None and asyncio.get_running_loop().time() >= until:
            disk.status = "ok"
            del self.e.locked_until[disk.id]
        if disk.storage_type != "image":
            return refused(
                f"Cannot transfer Virtual Disk: disk {disk.name} has storage type "
                f"{disk.storage_type}; only image disks can be transferred."
            )
        if disk.status != "ok":
            return refused(
                f"Cannot transfer Virtual Disk: Disk {disk.name} is {disk.status}. "
                "Please try again in a few minutes."
            )
        return None

    async def _begin(self, t: m.Transfer, disk: m.Disk) -> None:
        await asyncio.sleep(PHASE_DELAY)
        if self.faults_for(disk, "paused_system"):
            t.phase = m.Phase.PAUSED_SYSTEM
            t.message = "imageio is not running on the host"
            return
        try:
            size = disk.provisioned_size
            if t.backup_id is not None:
                url, dirty = self.e.backups.export_of(t.backup_id, disk.id)
            elif t.backend == "file":
                url, size, dirty = await self._file_source(disk)
            else:
                url, dirty = (await self.export(disk)).url, False
            t.ticket = str(uuid.uuid4())
            await self.e.imageio.add_ticket(
                t.ticket,
                size=size,
                url=url,
                transfer_id=t.id,
                timeout=TICKET_TIMEOUT,
                inactivity_timeout=t.inactivity_timeout,
                dirty=dirty,
            )
        except Exception as exc:
            t.phase, t.message = m.Phase.PAUSED_SYSTEM, f"ticket setup failed: {exc}"
            return
        proxy = self.e.proxy
        assert proxy is not None
        t.proxy_url = f"{proxy.url}/images/{t.ticket}"
        t.transfer_url = f"{self.e.imageio.url}/images/{t.ticket}"
        rules = Rules()
        for f in self.faults_for(disk, "bandwidth"):
            rules.bytes_per_second = f.bytes_per_second
        for f in self.faults_for(disk, "connection_reset"):
            rules.reset_after_bytes, rules.resets_left = f.after_bytes, f.count
        for f in self.faults_for(disk, "control_reset"):
            rules.control_resets = {"OPTIONS": f.count, "extents": f.count}
        for f in self.faults_for(disk, "http_5xx"):
            rules.errors_left, rules.error_status = f.count, f.status
        for f in self.faults_for(disk, "corrupt_data"):
            rules.corrupt_after_bytes = max(1, f.after_bytes)
        for _ in self.faults_for(disk, "no_checksum"):
            rules.no_checksum = True
        for f in self.faults_for(disk, "ticket_expiry"):
            rules.expire_after_bytes = f.after_bytes
            rules.expire = functools.partial(self.e.imageio.extend_ticket, t.ticket, 0)
        if rules != Rules(started=rules.started):
            proxy.rules[t.ticket] = rules
            t.transfer_url = f"{proxy.url}/images/{t.ticket}"
        if self.faults_for(disk, "host_unreachable"):
            t.transfer_url = f"https://127.0.0.1:{free_port()}/images/{t.ticket}"
        t.phase = m.Phase.TRANSFERRING
        self.e.spawn(self._watch(t))

    async def _file_source(self, disk: m.Disk) -> tuple[str, int, bool]:
        """The ticket of the ``file`` backend: imageio reads the volume as stored, its size
        the disk's virtual size for a raw volume, the file's size for a qcow2 one (what
        TransferDiskImageCommand.getTransferSize gives for a download)."""
        path = await self.e.image_path(disk.id)
        size = disk.provisioned_size if disk.image.fmt == "raw" else path.stat().st_size
        return f"file://{path}", size, False

    async def _watch(self, t: m.Transfer) -> None:
        """What the engine does while a transfer runs: follow the ticket's progress
        and pause the transfer when the client stays idle."""
        while t.phase == m.Phase.TRANSFERRING and t.ticket is not None:
            info = await self.e.imageio.ticket_info(t.ticket)
            if info is None:
                return
            t.transferred = int(info.get("transferred", 0))
            if not info.get("active") and info.get("idle_time", 0) > t.inactivity_timeout:
                t.phase = m.Phase.PAUSED_SYSTEM
                t.message = f"client idle for more than {t.inactivity_timeout} s"
                await self.e.imageio.remove_ticket(t.ticket)
                return
            await asyncio.sleep(0.25)

    async def get(self, request: Request) -> Response:
        t = self.e.inv.transfers.get(request.path_params["id"])
        if t is None:
            return fault(404, "Not Found", f"Entity not found: {request.path_params['id']}")
        return xml(x.document(x.transfer(t)))

    async def action(self, request: Request) -> Response:
        t = self.e.inv.transfers.get(request.path_params["id"])
        action = request.path_params["action"]
        if t is None:
            return fault(404, "Not Found", f"Entity not found: {request.path_params['id']}")
        if action == "extend":
            return xml(x.action())
        if action == "finalize":
            if t.phase != m.Phase.TRANSFERRING:
                return refused(f"Cannot finalize: phase {t.phase}")
            t.phase = m.Phase.FINALIZING_SUCCESS
            self.e.spawn(self._end(t, m.Phase.FINISHED_SUCCESS, EVENT_TRANSFER_DONE))
            return xml(x.action())
        if action == "cancel":
            if t.phase in (m.Phase.FINISHED_SUCCESS, m.Phase.FINISHED_CLEANUP):
                return refused(f"Cannot cancel: phase {t.phase}")
            t.phase = m.Phase.CANCELLED_USER
            self.e.spawn(self._end(t, m.Phase.FINISHED_CLEANUP, EVENT_TRANSFER_FAILED))
            return xml(x.action())
        return fault(404, "Not Found", f"no action {action} on image transfers")

    async def _end(self, t: m.Transfer, final: m.Phase, code: int) -> None:
        await asyncio.sleep(PHASE_DELAY)
        if final == m.Phase.FINISHED_CLEANUP:
            t.phase = m.Phase.FINALIZING_CLEANUP
        if t.ticket is not None:
            info = await self.e.imageio.ticket_info(t.ticket)
            if info is not None:
                t.transferred = int(info.get("transferred", t.transferred))
            await self.e.imageio.remove_ticket(t.ticket)
        await asyncio.sleep(PHASE_DELAY)
        disk = self.e.inv.disks[t.disk_id]
        if t.backup_id is None or not self.e.backups.holds(t.backup_id):
            disk.status = "ok"
        t.phase = final
        self.e.changes.disk_events(code, f"Image transfer of disk {disk.name}: {final}", disk)

    async def fail(self, t: m.Transfer, message: str) -> None:
        """End a transfer whose image source went away (its backup failed)."""
        if t.phase in _DONE:
            return
        if t.ticket is not None:
            await self.e.imageio.remove_ticket(t.ticket)
        t.phase, t.message = m.Phase.FINISHED_FAILURE, message
