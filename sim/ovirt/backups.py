"""VM incremental backups and checkpoints (``/vms/{vm}/backups``, ``/vms/{vm}/checkpoints``).

What the engine, vdsm and libvirt do, done with qemu-img on the images:

* Checkpoints form a chain per VM. Each one has a persistent bitmap of its own id in every
  incremental disk (``backup: incremental``, qcow2) of the backup that made it; only the
  newest (leaf) bitmap is enabled, older ones were disabled when the next was added, as
  libvirt does. So "changed since checkpoint C" is the merge of C's bitmap and every newer
  one.
* Starting a backup (with the VM's guest writes paused): add the new checkpoint's bitmap
  (and disable the previous leaf), copy each disk's image to a scratch file (the frozen view
  the backup reads, as oVirt's scratch disks), and in the scratch copy only, for a disk
  copied incrementally, add a disabled bitmap merging the chain from ``from_checkpoint_id``
  on. A read-only qemu-nbd serves the scratch copy (with that bitmap, ``--bitmap``); the
  guest then writes on into the live image (see ``sim/ovirt/guest.py`` on locking).
* Finalizing stops the exports and deletes the scratch copies (and with them the merged
  bitmaps); the new checkpoint stays. A failed backup also removes its checkpoint, merging
  its bitmap back into its parent's, as removing a checkpoint does.

Validation follows the engine's ``StartVmBackupCommand`` (and its messages, from
``AppErrors.properties``): disks mandatory and existing, plugged, not locked; the
``from_checkpoint_id`` known and not ``invalid``; the VM ``up`` or ``down``; one backup at
a time per VM (409); a client-chosen id not already used. A disk whose ``backup`` is
``none`` is not refused (the engine takes it, copies it ``full`` and leaves it out of the
checkpoint), nor is a disk newer than the checkpoint (``full`` too).

Phases: ``initializing`` -> ``starting`` -> ``ready`` -> (finalize) ``finalizing`` ->
``succeeded``; ``failed`` from any of them. Events (``AuditLogType``): VM_BACKUP_STARTED
10790, VM_BACKUP_FAILED 10792, VM_BACKUP_SUCCEEDED 10793,
VM_INCREMENTAL_BACKUP_FAILED_FULL_VM_BACKUP_NEEDED 10791, VM_CHECKPOINT_DELETED 10797; each
names the backup (or checkpoint) id, so ``/events?search=<id>`` finds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from xml.etree import ElementTree as ET

from starlette.requests import Request
from starlette.responses import Response

from sim.ovirt import entities as m
from sim.ovirt import xmlapi as x
from sim.ovirt.guest import QemuError, bitmap, bitmaps, qemu
from sim.ovirt.images import NbdExport
from sim.ovirt.scenario import Fault
from sim.ovirt.transfers import PHASE_DELAY, fault, refused, xml

if TYPE_CHECKING:
    from sim.ovirt.engine import Engine

USER = "admin@internal-authz"
VM_BACKUP_STARTED = 10790
VM_INCREMENTAL_BACKUP_FAILED_FULL_VM_BACKUP_NEEDED = 10791
VM_BACKUP_FAILED = 10792
VM_BACKUP_SUCCEEDED = 10793
VM_CHECKPOINT_DELETED = 10797


class BackupFailed(RuntimeError):
    def __init__(self, reason: str, code: int = VM_BACKUP_FAILED) -> None:
        super().__init__(reason)
        self.code = code


class Backups:
    def __init__(self, engine: Engine) -> None:
        self.e = engine
        self.exports: dict[str, dict[str, NbdExport]] = {}  # backup id -> disk id -> export
        #: Backups of a VM that was down: served from the live images (nothing writes them),
        #: with the merged bitmap added there; backup id -> (disk id -> merged bitmap).
        self.live: dict[str, dict[str, str | None]] = {}
        self._fault_uses: dict[int, int] = {}
        #: Checkpoints whose chain to the leaf crosses one lost out of band: a backup from
        #: them fails, as libvirt finds a bitmap missing.
        self.broken: set[str] = set()

    # ---- helpers ---------------------------------------------------------------------------

    def _vm(self, request: Request) -> m.Vm | None:
        return self.e.inv.vms.get(request.path_params["id"])

    def _take_fault(self, kind: str, disks: list[m.Disk]) -> Fault | None:
        """The first armed fault of ``kind`` for these disks, used once (of its ``count``)."""
        for f in self.e.faults:
            if f.kind == kind and any(f.applies(d) for d in disks):
                used = self._fault_uses.get(id(f), 0)
                if used < f.count:
                    self._fault_uses[id(f)] = used + 1
                    return f
        return None

    def checkpoints_of(self, vm_id: str) -> list[m.Checkpoint]:
        return [c for c in self.e.inv.checkpoints.values() if c.vm_id == vm_id]

    def chain(self, vm_id: str, from_id: str) -> list[m.Checkpoint] | None:
        """From ``from_id`` to the VM's leaf, oldest first; None if a link is missing."""
        mine = self.checkpoints_of(vm_id)
        if not mine or from_id in self.broken:
            return None
        out = [mine[-1]]
        while out[-1].id != from_id:
            parent = self.e.inv.checkpoints.get(out[-1].parent_id or "")
            if parent is None:
                return None
            out.append(parent)
        return out[::-1]

    def holds(self, backup_id: str) -> bool:
        b = self.e.inv.backups.get(backup_id)
        return b is not None and b.active

    def _event(self, code: int, text: str, vm: m.Vm) -> None:
        self.e.changes._vm_event(code, text, vm)

    # ---- backups API -----------------------------------------------------------------------

    async def collection(self, request: Request) -> Response:
        vm = self._vm(request)
        if vm is None:
            return fault(404, "Not Found", f"Entity not found: {request.path_params['id']}")
        if request.method == "GET":
            mine = (b for b in self.e.inv.backups.values() if b.vm_id == vm.id)
            return xml(x.collection("backups", (x.backup(b) for b in mine)))
        try:
            body = ET.fromstring(await request.body())  # noqa: S314 (a test simulator)
        except ET.ParseError as exc:
            return fault(400, "Bad Request", f"malformed XML: {exc}")
        disk_ids = [d.get("id") or "" for d in body.findall("disks/disk")]
        if not disk_ids:
            return fault(400, "Incomplete parameters", "Backup [disks] required for add")
        refusal = self._validate(vm, body, disk_ids)
        if refusal is not None:
            return refusal
        disks = [self.e.inv.disks[i] for i in disk_ids]
        forced = self._take_fault("backup_refused", disks)
        if forced is not None:
            return fault(forced.status, "Operation Failed", "[Internal Engine Error]")
        from_id = body.findtext("from_checkpoint_id") or None
        base = self.e.inv.checkpoints.get(from_id or "")
        incremental = [d for d in disks if d.backup == "incremental"]
        b = m.Backup(
            id=body.get("id") or str(uuid.uuid4()),
            vm_id=vm.id,
            disk_ids=disk_ids,
            from_checkpoint_id=from_id,
            to_checkpoint_id=str(uuid.uuid4()) if incremental else None,
            host_id=vm.host_id or next(iter(self.e.inv.hosts)),
        )
        for d in disks:
            in_base = base is not None and d.id in base.disk_ids
            b.modes[d.id] = "incremental" if in_base else "full"
            d.status = "locked"
        self.e.inv.backups[b.id] = b
        self._event(
            VM_BACKUP_STARTED, f"Backup {b.id} for VM {vm.name} started (User: {USER}).", vm
        )
        self.e.spawn(self._run(b, vm, disks))
        return xml(x.document(x.backup(b)), 201)

    def _validate(self, vm: m.Vm, body: ET.Element, disk_ids: list[str]) -> Response | None:
        head = "Cannot backup VM."
        missing = [i for i in disk_ids if i not in self.e.inv.disks]
        if missing:
            return refused(
                f"{head} The following disk(s) ID(s) does not exist: {', '.join(missing)}."
            )
        disks = [self.e.inv.disks[i] for i in disk_ids]
        if any(d.status == "locked" for d in disks):
            return refused("Cannot backup VM: Disk is locked. Please try again later.")
        plugged = {a.disk_id for a in vm.disk_attachments if a.active}
        unplugged = [i for i in disk_ids if i not in plugged]
        if unplugged:
            return refused(
                f"{head} The following disks are not active on VM {vm.name}: "
                + ", ".join(unplugged)
            )
        from_id = body.findtext("from_checkpoint_id") or None
        if from_id is not None:
            base = self.e.inv.checkpoints.get(from_id)
            if base is None or base.vm_id != vm.id:
                return refused(f"{head} Checkpoint ID {from_id} doesn't exist.")
            if base.state == "invalid":
                return refused(f"{head} Checkpoint ID {from_id} is invalid and should be removed.")
        if vm.status not in ("up", "down"):
            return refused(f"{head} The Virtual Machine should be in Up or Down status.")
        if any(b.vm_id == vm.id and b.active for b in self.e.inv.backups.values()):
            return refused(f"{head} The VM is during a backup operation.")
        wanted = body.get("id")
        if wanted is not None and wanted in self.e.inv.backups:
            return refused(f"{head} The specified VM backup ID {wanted} already exists.")
        return None

    async def get(self, request: Request) -> Response:
        b = self.e.inv.backups.get(request.path_params["backup"])
        if b is None or b.vm_id != request.path_params["id"]:
            return fault(404, "Not Found", f"Entity not found: {request.path_params['backup']}")
        return xml(x.document(x.backup(b)))

    async def disks(self, request: Request) -> Response:
        b = self.e.inv.backups.get(request.path_params["backup"])
        if b is None or b.vm_id != request.path_params["id"]:
            return fault(404, "Not Found", f"Entity not found: {request.path_params['backup']}")
        disks = (self.e.inv.disks[i] for i in b.disk_ids if i in self.e.inv.disks)
        return xml(x.collection("disks", (x.backup_disk(b, d) for d in disks)))

    async def action(self, request: Request) -> Response:
        b = self.e.inv.backups.get(request.path_params["backup"])
        action = request.path_params["action"]
        if b is None or b.vm_id != request.path_params["id"]:
            return fault(404, "Not Found", f"Entity not found: {request.path_params['backup']}")
        if action != "finalize":
            return fault(404, "Not Found", f"no action {action} on backups")
        if b.phase != m.BackupPhase.READY:
            return refused(
                "Cannot stop VM backup. The VM backup is not in READY phase, backup phase is "
                f"{b.phase.value}."
            )
        b.set_phase(m.BackupPhase.FINALIZING)
        self.e.spawn(self._finalize(b))
        return xml(x.action())

    # ---- the backup's life -----------------------------------------------------------------

    async def _run(self, b: m.Backup, vm: m.Vm, disks: list[m.Disk]) -> None:
        await asyncio.sleep(PHASE_DELAY)
        if not b.active:
            return
        b.set_phase(m.BackupPhase.STARTING)
        await asyncio.sleep(PHASE_DELAY)
        if not b.active:
            return
        try:
            if self._take_fault("backup_failed", disks) is not None:
                raise BackupFailed("the host failed to start the backup")
            await self._start(b, vm, disks)
        except BackupFailed as exc:
            await self.fail(b, str(exc), exc.code)
            return
        except (QemuError, RuntimeError) as exc:
            await self.fail(b, f"the host failed to start the backup: {exc}")
            return
        if not b.active:  # failed meanwhile (an engine restart)
            return
        b.set_phase(m.BackupPhase.READY)
        restart = self._take_fault("engine_restart", disks)
        if restart is not None:
            self.e.spawn(self.e.restart(restart.seconds))

    async def _start(self, b: m.Backup, vm: m.Vm, disks: list[m.Disk]) -> None:
        chain: list[m.Checkpoint] = []
        if b.from_checkpoint_id is not None:
            found = self.chain(vm.id, b.from_checkpoint_id)
            if found is None:
                raise BackupFailed(
                    f"Incremental backup {b.id} for VM {vm.name} failed. Full backup is now "
                    f"needed (User: {USER}).",
                    VM_INCREMENTAL_BACKUP_FAILED_FULL_VM_BACKUP_NEEDED,
                )
            chain = found
        mine = self.checkpoints_of(vm.id)
        leaf = mine[-1] if mine else None
        exports = self.exports.setdefault(b.id, {})
        async with self.e.guest.paused(vm.id):
            if b.to_checkpoint_id is not None:
                cp = m.Checkpoint(
                    b.to_checkpoint_id,
                    vm.id,
                    leaf.id if leaf else None,
                    [d.id for d in disks if d.backup == "incremental"],
                )
                self.e.inv.checkpoints[cp.id] = cp
            for disk in disks:
                if not await self.e.transfers.release(disk.id):
                    raise BackupFailed(f"disk {disk.name} is held by another transfer")
                path = await self.e.image_path(disk.id)
                merge: list[str] = []
                if disk.backup == "incremental":
                    have = await bitmaps(path)
                    if b.modes[disk.id] == "incremental":
                        merge = [c.id for c in chain if disk.id in c.disk_ids]
                        if any(name not in have for name in merge):
                            raise BackupFailed(
                                f"Incremental backup {b.id} for VM {vm.name} failed. Full "
                                f"backup is now needed (User: {USER}).",
                                VM_INCREMENTAL_BACKUP_FAILED_FULL_VM_BACKUP_NEEDED,
                            )
                    if leaf is not None and have.get(leaf.id):
                        await bitmap(path, leaf.id, "--disable")
                    assert b.to_checkpoint_id is not None
                    await bitmap(path, b.to_checkpoint_id, "--add")
                # A running guest writes on: the backup reads a copy of the image as it was
                # (libvirt's scratch disk does that by copy-before-write, at no upfront
                # cost). A VM that is down writes nothing: its image is served as it is, so
                # a final backup costs no copy time here either.
                down = vm.status == "down"
                scratch = path if down else self._scratch(b, disk)
                if not down:
                    await qemu("cp", "--sparse=always", str(path), str(scratch))
                name = None
                if merge:
                    name = f"backup-{b.id}"
                    ops = [op for src in merge for op in ("--merge", src)]
                    await bitmap(scratch, name, "--add", "--disable", *ops)
                if down:
                    self.live.setdefault(b.id, {})[disk.id] = name
                sock = self.e.workdir / "images" / f"{disk.id[:8]}-{b.id[:8]}.sock"
                export = NbdExport(scratch, disk.image.fmt, sock, bitmap=name)
                exports[disk.id] = export
                await export.start()

    def _scratch(self, b: m.Backup, disk: m.Disk) -> Path:
        suffix = "qcow2" if disk.image.fmt == "qcow2" else "raw"
        return self.e.workdir / "images" / f"{disk.id}.backup-{b.id[:8]}.{suffix}"

    async def _teardown(self, b: m.Backup) -> None:
        live = self.live.pop(b.id, {})
        for disk_id, export in self.exports.pop(b.id, {}).items():
            await export.stop()
            if disk_id in live:
                merged = live[disk_id]
                if merged is not None:  # the live image keeps only the checkpoints' bitmaps
                    async with self.e.guest.paused(b.vm_id):
                        with contextlib.suppress(QemuError):
                            await bitmap(export.image, merged, "--remove")
                continue
            with contextlib.suppress(KeyError):
                self._scratch(b, self.e.inv.disks[disk_id]).unlink(missing_ok=True)
        for disk_id in b.disk_ids:
            disk = self.e.inv.disks.get(disk_id)
            if disk is not None and disk.status == "locked":
                disk.status = "ok"

    def export_of(self, backup_id: str, disk_id: str) -> tuple[str, bool]:
        """The URL a transfer of this backup's disk reads, and whether it has dirty extents."""
        export = self.exports.get(backup_id, {}).get(disk_id)
        if export is None:
            raise RuntimeError(f"backup {backup_id} serves no disk {disk_id}")
        return export.url, export.bitmap is not None

    def transfer_problem(self, backup_id: str, disk: m.Disk, fmt: str | None) -> str | None:
        """Why the engine refuses a transfer of ``disk`` in backup ``backup_id`` (or None)."""
        b = self.e.inv.backups.get(backup_id)
        if b is None:
            return "The specified VM backup does not exist."
        if b.phase != m.BackupPhase.READY:
            return f"The VM backup is not in READY phase, backup phase is {b.phase.value}."
        if fmt == "cow":
            return "The specified format is not applicable for VM backup."
        if disk.id not in b.disk_ids:
            return f"Disk {disk.id} is not part of VM backup {b.id}."
        return None

    async def _finalize(self, b: m.Backup) -> None:
        await asyncio.sleep(PHASE_DELAY)
        await self._teardown(b)
        vm = self.e.inv.vms.get(b.vm_id)
        if b.phase != m.BackupPhase.FINALIZING or vm is None:
            return
        disks = [self.e.inv.disks[i] for i in b.disk_ids if i in self.e.inv.disks]
        if b.to_checkpoint_id is not None:  # the faults strike before the client sees success
            if self._take_fault("checkpoint_invalid", disks) is not None:
                self.invalidate_checkpoint(b.to_checkpoint_id)
            if self._take_fault("checkpoint_missing", disks) is not None:
                await self.lose_checkpoint(b.to_checkpoint_id)
        b.set_phase(m.BackupPhase.SUCCEEDED)
        self._event(
            VM_BACKUP_SUCCEEDED,
            f"Backup {b.id} for VM {vm.name} completed successfully (User: {USER}).",
            vm,
        )

    async def fail(self, b: m.Backup, reason: str, code: int = VM_BACKUP_FAILED) -> None:
        """End ``b`` as ``failed``: its exports and transfers stop, its checkpoint goes."""
        if not b.active:
            return
        b.set_phase(m.BackupPhase.FAILED)
        b.message = reason
        for t in list(self.e.inv.transfers.values()):
            if t.backup_id == b.id:
                await self.e.transfers.fail(t, f"backup {b.id} failed: {reason}")
        await self._teardown(b)
        cp = self.e.inv.checkpoints.get(b.to_checkpoint_id or "")
        if cp is not None:
            with contextlib.suppress(QemuError):
                await self.remove_checkpoint(cp)
        vm = self.e.inv.vms.get(b.vm_id)
        if vm is not None:
            if code != VM_BACKUP_FAILED:
                self._event(code, reason, vm)
            self._event(
                VM_BACKUP_FAILED,
                f"Backup {b.id} for VM {vm.name} failed (User: {USER}). Reason: {reason}",
                vm,
            )

    async def fail_in_flight(self, reason: str) -> None:
        for b in list(self.e.inv.backups.values()):
            if b.active:
                await self.fail(b, reason)

    async def stop(self) -> None:
        for b in list(self.e.inv.backups.values()):
            await self._teardown(b)

    # ---- checkpoints -----------------------------------------------------------------------

    async def checkpoints(self, request: Request) -> Response:
        vm = self._vm(request)
        if vm is None:
            return fault(404, "Not Found", f"Entity not found: {request.path_params['id']}")
        return xml(x.collection("checkpoints", map(x.checkpoint, self.checkpoints_of(vm.id))))

    async def checkpoint(self, request: Request) -> Response:
        cp = self.e.inv.checkpoints.get(request.path_params["checkpoint"])
        vm = self._vm(request)
        if cp is None or vm is None or cp.vm_id != vm.id:
            return fault(404, "Not Found", f"Entity not found: {request.path_params['checkpoint']}")
        if request.method == "GET":
            return xml(x.document(x.checkpoint(cp)))
        if any(b.vm_id == vm.id and b.active for b in self.e.inv.backups.values()):
            return refused("Cannot remove checkpoint. The VM is during a backup operation.")
        await self.remove_checkpoint(cp)
        self._event(
            VM_CHECKPOINT_DELETED,
            f"Checkpoint {cp.id} for VM {vm.name} deleted (User: {USER}).",
            vm,
        )
        return xml(x.action())

    async def remove_checkpoint(self, cp: m.Checkpoint) -> None:
        """Remove ``cp`` as libvirt does: its bitmap is merged into its parent's (which
        becomes the enabled one if ``cp`` was the leaf), so older checkpoints stay whole."""
        parent = self.e.inv.checkpoints.get(cp.parent_id or "")
        async with self.e.guest.paused(cp.vm_id):
            for disk_id in cp.disk_ids:
                if disk_id not in self.e.inv.disks or not await self.e.transfers.release(disk_id):
                    continue
                path = await self.e.image_path(disk_id)
                have = await bitmaps(path)
                if cp.id not in have:
                    continue
                if parent is not None and parent.id in have:
                    await bitmap(path, parent.id, "--merge", cp.id)
                    if have[cp.id]:
                        await bitmap(path, parent.id, "--enable")
                await bitmap(path, cp.id, "--remove")
        for other in self.e.inv.checkpoints.values():
            if other.parent_id == cp.id:
                other.parent_id = cp.parent_id
        self.e.inv.checkpoints.pop(cp.id, None)

    def invalidate_checkpoint(self, checkpoint_id: str) -> None:
        """Fault "checkpoint invalid": the engine marks it ``invalid`` (as after a snapshot
        revert); backups from it are refused until it is removed."""
        self.e.inv.checkpoints[checkpoint_id].state = "invalid"

    async def lose_checkpoint(self, checkpoint_id: str) -> None:
        """Fault "checkpoint missing": the checkpoint and its bitmaps are gone, as if removed
        out of band (nothing merged). Backups from it are refused (unknown id); backups from
        older ones fail (their chain has a hole), so a full backup is needed."""
        cp = self.e.inv.checkpoints.pop(checkpoint_id)
        async with self.e.guest.paused(cp.vm_id):
            for disk_id in cp.disk_ids:
                if disk_id in self.e.inv.disks and await self.e.transfers.release(disk_id):
                    path = await self.e.image_path(disk_id)
                    if cp.id in await bitmaps(path):
                        await bitmap(path, cp.id, "--remove")
        ancestor = cp.parent_id
        while ancestor is not None and ancestor in self.e.inv.checkpoints:
            self.broken.add(ancestor)
            ancestor = self.e.inv.checkpoints[ancestor].parent_id
