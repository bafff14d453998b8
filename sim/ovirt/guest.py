"""The running guests' writes, and the qemu-img bitmap operations backups make around them.

A VM that is ``up`` with ``guest_write_rate`` > 0 writes into each of its incremental-backup
disks (``backup: incremental``, qcow2) with ``qemu-io``: every ``TICK`` seconds one qemu-io
run does a batch of 64 KiB writes at 64 KiB-aligned offsets from a RNG seeded per disk; about
one write in ten is ``write -z`` (zeroed range). qemu-io opens the image read-write, so every
enabled persistent bitmap in it marks the ranges dirty, as a running qemu would.

Image locking: qemu-io needs the image's write lock, which a read-only ``qemu-nbd`` holding
the same file refuses (it does not share "write" unless ``--force-share``, and force-sharing
would let it serve stale qcow2 metadata). So nothing but the writer keeps the live image
open: a backup serves a point-in-time copy of it (a scratch file, as oVirt's backups
read a scratch disk), and an idle cold-transfer export of the disk is stopped before a batch
(it is started again by the next transfer). A cold transfer that is running keeps its export
and the writer skips that disk (``skipped`` counts it): the engine refuses such transfers of
a running VM's disk anyway.

Bitmap changes (backups, checkpoint removal) and power-off hold the VM's lock (``paused``),
and every write (a running guest's batch, ``Engine.write_guest``) holds the lock of each VM
its disk is attached to, so they never overlap: a checkpoint's bitmap added at backup start
sees every write that follows, the scratch copy every write that preceded, and once a VM is
down, its images no longer change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.ovirt import entities as m

GRAIN = 64 << 10  # write size and alignment: the bitmaps' default granularity
TICK = 0.25  # seconds between a running guest's batches
ZERO_SHARE = 0.1


class QemuError(RuntimeError):
    """A qemu tool failed (its stderr is the message)."""


async def qemu(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise QemuError(f"{' '.join(argv[:3])}: {err.decode(errors='replace').strip()}")
    return out.decode()


async def bitmap(path: Path, name: str, *ops: str) -> None:
    """``qemu-img bitmap OPS path name`` (ops such as ``--add``, ``--disable``,
    ``--merge``, ``SRC``, applied in order)."""
    await qemu("qemu-img", "bitmap", *ops, str(path), name)


async def bitmaps(path: Path) -> dict[str, bool]:
    """The image's persistent bitmaps: name -> enabled."""
    info = json.loads(await qemu("qemu-img", "info", "-U", "--output=json", str(path)))
    found: list[dict[str, Any]] = info.get("format-specific", {}).get("data", {}).get("bitmaps", [])
    return {b["name"]: "auto" in b.get("flags", []) for b in found}


@dataclass(frozen=True)
class GuestWrite:
    offset: int
    length: int
    zero: bool


@dataclass
class WriteStats:
    batches: int = 0
    writes: int = 0
    zero_writes: int = 0
    bytes: int = 0
    skipped: int = 0
    errors: int = 0
    ranges: list[GuestWrite] = field(default_factory=list)


class GuestWriter:
    """Writes of every running guest (``Engine.guest``).

    ``release`` is called before a batch touches a disk: it stops an idle export that holds
    the image and says whether the disk may be written now."""

    def __init__(
        self,
        inv: m.Inventory,
        image_path: Callable[[str], Awaitable[Path]],
        release: Callable[[str], Awaitable[bool]],
    ) -> None:
        self.inv = inv
        self._image_path = image_path
        self._release = release
        self.stats: dict[str, WriteStats] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._rngs: dict[str, random.Random] = {}
        self._budget: dict[str, float] = {}

    def _lock(self, vm_id: str) -> asyncio.Lock:
        return self._locks.setdefault(vm_id, asyncio.Lock())

    @contextlib.asynccontextmanager
    async def paused(self, vm_id: str) -> AsyncIterator[None]:
        """No write of this VM's guest happens while in here."""
        async with self._lock(vm_id):
            yield

    def disks_of(self, vm: m.Vm) -> list[m.Disk]:
        disks = (self.inv.disks.get(a.disk_id) for a in vm.disk_attachments if a.active)
        return [d for d in disks if d is not None and d.backup == "incremental"]

    def _plan(self, disk: m.Disk, nbytes: int, zero: bool | None) -> list[GuestWrite]:
        rng = self._rngs.setdefault(disk.id, random.Random(disk.image.seed ^ 0x5EED))
        slots = max(1, disk.provisioned_size // GRAIN)
        count = max(1, -(-nbytes // GRAIN))
        plan = []
        for _ in range(count):
            is_zero = rng.random() < ZERO_SHARE if zero is None else zero
            plan.append(GuestWrite(rng.randrange(slots) * GRAIN, GRAIN, is_zero))
        return plan

    async def write(self, disk_id: str, nbytes: int, zero: bool | None = None) -> list[GuestWrite]:
        """Write ``nbytes`` (rounded up to 64 KiB writes) into the disk now; ``zero`` forces
        every write to be (True) or not be (False) a zeroed range. Returns what was written
        (empty if a running cold transfer holds the disk)."""
        disk = self.inv.disks[disk_id]
        if disk.image.fmt != "qcow2":
            raise ValueError(f"disk {disk.name}: the guest writer writes qcow2 images only")
        async with self._holding(disk_id):
            return await self._write(disk, nbytes, zero)

    @contextlib.asynccontextmanager
    async def _holding(self, disk_id: str) -> AsyncIterator[None]:
        """Hold the lock of every VM the disk is attached to, so that no bitmap change
        (a backup's new checkpoint, a checkpoint's removal) or power-off of any of them
        overlaps the write: a bitmap added while a write runs could miss it. The locks are
        taken in id order (two writers never wait on each other), and again if the disk's
        VMs changed while waiting for them."""
        while True:
            ids = sorted(vm.id for vm in self.inv.vms_of_disk(disk_id))
            async with contextlib.AsyncExitStack() as held:
                for vm_id in ids:
                    await held.enter_async_context(self._lock(vm_id))
                if sorted(vm.id for vm in self.inv.vms_of_disk(disk_id)) == ids:
                    yield
                    return

    async def _write(self, disk: m.Disk, nbytes: int, zero: bool | None) -> list[GuestWrite]:
        stats = self.stats.setdefault(disk.id, WriteStats())
        if not await self._release(disk.id):
            stats.skipped += 1
            return []
        path = await self._image_path(disk.id)
        plan = self._plan(disk, nbytes, zero)
        argv = ["qemu-io", "-f", "qcow2"]
        for i, w in enumerate(plan):
            pattern = (i * 37 + w.offset // GRAIN) % 255 + 1
            op = "write -z" if w.zero else f"write -P 0x{pattern:02x}"
            argv += ["-c", f"{op} {w.offset} {w.length}"]
        await qemu(*argv, str(path))
        stats.batches += 1
        stats.writes += len(plan)
        stats.zero_writes += sum(w.zero for w in plan)
        stats.bytes += sum(w.length for w in plan)
        stats.ranges.extend(plan)
        return plan

    async def run(self) -> None:
        """The writes of every running guest, forever (``Engine.start`` spawns it)."""
        while True:
            await asyncio.sleep(TICK)
            for vm in list(self.inv.vms.values()):
                if vm.guest_write_rate <= 0 or vm.status != "up":
                    continue
                for disk in self.disks_of(vm):
                    async with self._holding(disk.id):
                        if vm.status != "up":  # powered off while waiting: no more writes
                            break
                        budget = self._budget.get(disk.id, 0.0) + vm.guest_write_rate * TICK
                        whole = int(budget // GRAIN) * GRAIN
                        self._budget[disk.id] = budget - whole
                        if whole:
                            try:
                                await self._write(disk, whole, None)
                            except QemuError:
                                self.stats.setdefault(disk.id, WriteStats()).errors += 1
