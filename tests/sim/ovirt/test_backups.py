"""VM incremental backups of the simulated engine, through the real ovirtsdk4 and the real
imageio daemon: checkpoints, dirty extents of what the guest wrote, the engine's refusals,
and the backup fault kinds."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from sim.ovirt import entities as m
from sim.ovirt.engine import Engine
from sim.ovirt.guest import bitmaps
from sim.ovirt.scenario import Fault
from sim.ovirt.sdkclient import connect, download_transfer
from tests.conftest import eventually
from tests.sim.ovirt.backup_helpers import (
    backup_extents,
    backups_service,
    blocks,
    finalize_backup,
    new_vm,
    start_backup,
    written,
)

KiB = 1 << 10


def sdk_call(engine: Engine, fn: Any, *args: Any, **kw: Any) -> Any:
    def run() -> Any:
        conn = connect(engine)
        try:
            result = fn(conn, *args, **kw)
        except BaseException:
            # The call's own error is the one to see: logging out of an engine that is
            # unreachable fails too (a bare pycurl.error, which would hide it).
            with contextlib.suppress(Exception):
                conn.close()
            raise
        conn.close()
        return result

    return asyncio.to_thread(run)


async def test_full_then_incremental_backups_serve_what_the_guest_wrote(engine: Engine) -> None:
    vm = new_vm(engine, disks=2, raw=1)
    a, b, raw = (att.disk_id for att in vm.disk_attachments)

    full = await sdk_call(engine, start_backup, vm.id, [a, b, raw])
    assert full.phase == types.BackupPhase.READY
    assert full.from_checkpoint_id is None
    assert full.to_checkpoint_id
    assert engine.inv.disks[a].status == "locked"

    def modes(conn: Any, backup_id: str) -> dict[str, str]:
        disks = backups_service(conn, vm.id).backup_service(backup_id).disks_service().list()
        return {d.id: d.backup_mode.value for d in disks}

    assert await sdk_call(engine, modes, full.id) == {a: "full", b: "full", raw: "full"}
    status, _ = await sdk_call(engine, backup_extents, engine, a, full.id)
    assert status == 404  # a full copy has no dirty extents, as imageio answers
    done = await sdk_call(engine, finalize_backup, vm.id, full.id)
    assert done.phase == types.BackupPhase.SUCCEEDED
    assert engine.inv.disks[a].status == "ok"
    c1 = full.to_checkpoint_id

    first = await engine.write_guest(a, 512 * KiB, zero=False)
    first += await engine.write_guest(a, 128 * KiB, zero=True)
    inc = await sdk_call(engine, start_backup, vm.id, [a, b], c1)
    assert await sdk_call(engine, modes, inc.id) == {a: "incremental", b: "incremental"}
    status, extents = await sdk_call(engine, backup_extents, engine, a, inc.id)
    assert status == 200
    assert blocks(extents, dirty=True) == written(first)
    assert blocks(extents, dirty=True, zero=True) == written(first, zero=True)
    assert blocks(extents, dirty=True, zero=False) == written(first, zero=False)
    status, untouched = await sdk_call(engine, backup_extents, engine, b, inc.id)
    assert status == 200
    assert not blocks(untouched, dirty=True)
    await sdk_call(engine, finalize_backup, vm.id, inc.id)
    c2 = inc.to_checkpoint_id

    second = await engine.write_guest(a, 256 * KiB, zero=False)
    from_c2 = await sdk_call(engine, start_backup, vm.id, [a], c2)
    status, extents = await sdk_call(engine, backup_extents, engine, a, from_c2.id)
    assert blocks(extents, dirty=True) == written(second)  # older writes excluded
    await sdk_call(engine, finalize_backup, vm.id, from_c2.id)
    from_c1 = await sdk_call(engine, start_backup, vm.id, [a], c1)
    status, extents = await sdk_call(engine, backup_extents, engine, a, from_c1.id)
    assert blocks(extents, dirty=True) == written(first) | written(second)  # the chain merged
    await sdk_call(engine, finalize_backup, vm.id, from_c1.id)

    def checkpoints(conn: Any) -> list[tuple[str, str | None, str]]:
        service = conn.system_service().vms_service().vm_service(vm.id).checkpoints_service()
        return [(c.id, c.parent_id, c.state.value) for c in service.list()]

    listed = await sdk_call(engine, checkpoints)
    assert [c[0] for c in listed][:2] == [c1, c2]
    assert listed[1][1] == c1
    assert all(c[2] == "created" for c in listed)

    def remove(conn: Any, checkpoint_id: str) -> None:
        service = conn.system_service().vms_service().vm_service(vm.id).checkpoints_service()
        service.checkpoint_service(checkpoint_id).remove()

    await sdk_call(engine, remove, c1)
    listed = await sdk_call(engine, checkpoints)
    assert next(c[0] for c in listed) == c2
    assert listed[0][1] is None
    assert c1 not in await bitmaps(await engine.image_path(a))
    third = await engine.write_guest(a, 64 * KiB, zero=False)
    again = await sdk_call(engine, start_backup, vm.id, [a], c2)
    status, extents = await sdk_call(engine, backup_extents, engine, a, again.id)
    assert blocks(extents, dirty=True) == written(second) | written(third)
    await sdk_call(engine, finalize_backup, vm.id, again.id)


async def test_running_guest_writes_until_power_off(engine: Engine) -> None:
    vm = new_vm(engine, disks=1, guest_writes="2MiB")
    disk = vm.disk_attachments[0].disk_id
    full = await sdk_call(engine, start_backup, vm.id, [disk])
    await sdk_call(engine, finalize_backup, vm.id, full.id)
    stats = engine.guest.stats[disk]
    since = len(stats.ranges)
    await asyncio.sleep(0.8)

    def power_off(conn: Any) -> None:
        service = conn.system_service().vms_service().vm_service(vm.id)
        service.stop()
        while service.get().status != types.VmStatus.DOWN:
            time.sleep(0.05)

    await sdk_call(engine, power_off)
    after_off = stats.writes
    assert len(stats.ranges) > since
    assert stats.zero_writes > 0
    await asyncio.sleep(0.6)
    assert stats.writes == after_off  # a down VM writes nothing
    inc = await sdk_call(engine, start_backup, vm.id, [disk], full.to_checkpoint_id)
    status, extents = await sdk_call(engine, backup_extents, engine, disk, inc.id)
    assert status == 200
    assert written(stats.ranges[since:]) <= blocks(extents, dirty=True)
    await sdk_call(engine, finalize_backup, vm.id, inc.id)


async def test_no_write_while_any_vm_of_the_disk_is_paused(engine: Engine) -> None:
    """A backup start pauses its VM's guest while it adds the checkpoint's bitmap: a write
    into any of the VM's disks, even one attached to another VM too (listed first), waits,
    so the bitmap sees it whole or the scratch copy does."""
    other = new_vm(engine, disks=0)
    vm = new_vm(engine, disks=1)
    disk = vm.disk_attachments[0].disk_id
    other.disk_attachments.append(m.DiskAttachment(disk))
    assert engine.inv.vms_of_disk(disk)[0] is other
    async with engine.guest.paused(vm.id):
        pending = asyncio.create_task(engine.write_guest(disk, 64 * KiB))
        done, _ = await asyncio.wait({pending}, timeout=0.5)
        assert not done  # a negative check: a pass costs the timeout, never a flake
    assert await pending


async def test_the_engine_refusals(engine: Engine) -> None:
    vm = new_vm(engine, disks=2)
    disk, other = (a.disk_id for a in vm.disk_attachments)

    def refused(conn: Any, **kw: Any) -> str:
        with pytest.raises(sdk.Error) as caught:
            start_backup(conn, vm.id, kw.pop("disks", [disk]), kw.pop("from_cp", None), **kw)
        return str(caught.value)

    assert "Checkpoint ID nope doesn't exist" in await sdk_call(engine, refused, from_cp="nope")
    assert "does not exist" in await sdk_call(engine, refused, disks=["missing-disk"])
    first = await sdk_call(engine, start_backup, vm.id, [disk])
    assert "Disk is locked" in await sdk_call(engine, refused)  # checked first, as the engine
    assert "during a backup operation" in await sdk_call(engine, refused, disks=[other])

    def cow_transfer(conn: Any) -> str:
        with pytest.raises(sdk.Error) as caught:
            conn.system_service().image_transfers_service().add(
                types.ImageTransfer(
                    disk=types.Disk(id=disk),
                    backup=types.Backup(id=first.id),
                    direction=types.ImageTransferDirection.DOWNLOAD,
                    format=types.DiskFormat.COW,
                )
            )
        return str(caught.value)

    assert "format is not applicable for VM backup" in await sdk_call(engine, cow_transfer)
    await sdk_call(engine, finalize_backup, vm.id, first.id)
    assert "already exists" in await sdk_call(engine, refused, backup_id=first.id)
    chosen = await sdk_call(engine, start_backup, vm.id, [disk], None, backup_id="my-backup")
    assert chosen.id == "my-backup"
    await sdk_call(engine, finalize_backup, vm.id, chosen.id)


async def test_cold_transfer_unchanged_for_an_incremental_disk(engine: Engine) -> None:
    vm = new_vm(engine, disks=1)
    disk = vm.disk_attachments[0].disk_id

    def cold(conn: Any) -> list[str]:
        with download_transfer(conn, disk) as (transfer, phases):
            assert transfer.backup is None
        return phases

    assert await sdk_call(engine, cold) == ["initializing", "transferring", "finished_success"]
    assert await engine.write_guest(disk, 64 * KiB)  # the idle cold export lets the guest in


async def test_backup_refused_and_backup_failed_faults(engine: Engine) -> None:
    vm = new_vm(engine, disks=1)
    disk = engine.inv.disks[vm.disk_attachments[0].disk_id]
    engine.add_fault(Fault("backup_refused", disk=disk.name, count=1, status=503))
    engine.add_fault(Fault("backup_failed", disk=disk.name, count=1))

    def refused(conn: Any) -> str:
        with pytest.raises(sdk.Error) as caught:
            start_backup(conn, vm.id, [disk.id])
        return str(caught.value)

    assert "503" in await sdk_call(engine, refused)
    failed = await sdk_call(engine, start_backup, vm.id, [disk.id])
    assert failed.phase == types.BackupPhase.FAILED

    def events(conn: Any, text: str) -> list[str]:
        return [e.description for e in conn.system_service().events_service().list(search=text)]

    found = await sdk_call(engine, events, failed.id)
    assert any("failed" in d for d in found)
    assert any("started" in d for d in found)
    assert not [c for c in engine.inv.checkpoints.values() if c.vm_id == vm.id]
    assert disk.status == "ok"
    ok = await sdk_call(engine, start_backup, vm.id, [disk.id])
    assert ok.phase == types.BackupPhase.READY
    await sdk_call(engine, finalize_backup, vm.id, ok.id)


async def test_checkpoint_invalid_and_missing_faults(engine: Engine) -> None:
    vm = new_vm(engine, disks=1)
    disk = engine.inv.disks[vm.disk_attachments[0].disk_id]
    engine.add_fault(Fault("checkpoint_invalid", disk=disk.name, count=1))
    first = await sdk_call(engine, start_backup, vm.id, [disk.id])
    await sdk_call(engine, finalize_backup, vm.id, first.id)
    assert engine.inv.checkpoints[first.to_checkpoint_id].state == "invalid"

    def refused(conn: Any, from_cp: str) -> str:
        with pytest.raises(sdk.Error) as caught:
            start_backup(conn, vm.id, [disk.id], from_cp)
        return str(caught.value)

    assert "is invalid and should be removed" in await sdk_call(
        engine, refused, first.to_checkpoint_id
    )
    engine.add_fault(Fault("checkpoint_missing", disk=disk.name, count=1))
    second = await sdk_call(engine, start_backup, vm.id, [disk.id])
    await sdk_call(engine, finalize_backup, vm.id, second.id)
    lost = second.to_checkpoint_id
    assert lost not in engine.inv.checkpoints
    assert lost not in await bitmaps(await engine.image_path(disk.id))
    assert "doesn't exist" in await sdk_call(engine, refused, lost)
    full = await sdk_call(engine, start_backup, vm.id, [disk.id])
    assert full.phase == types.BackupPhase.READY  # a full backup is what is left to do
    await sdk_call(engine, finalize_backup, vm.id, full.id)


async def test_engine_restart_mid_backup(engine: Engine) -> None:
    vm = new_vm(engine, disks=1)
    disk = engine.inv.disks[vm.disk_attachments[0].disk_id]
    engine.add_fault(Fault("engine_restart", disk=disk.name, count=1, seconds=1.0))

    def follow(conn: Any) -> tuple[Any, list[types.BackupPhase]]:
        """Add the backup and poll it as a client of a real engine must across a restart:
        the engine restarts as soon as the backup is ready, so a poll may or may not see it
        ready first, and the polls in between find the engine unreachable (an ``sdk.Error``)
        until it is back and tells the backup failed."""
        service = backups_service(conn, vm.id)
        added = service.add(types.Backup(disks=[types.Disk(id=disk.id)]), require_consistency=True)
        one = service.backup_service(added.id)
        seen: list[types.BackupPhase] = []
        deadline = time.monotonic() + 60  # generous: a loaded CI machine is slow
        while not seen or seen[-1] not in (types.BackupPhase.FAILED, types.BackupPhase.SUCCEEDED):
            if time.monotonic() > deadline:
                raise AssertionError(f"the backup never ended: {seen}")
            time.sleep(0.05)
            try:
                seen.append(one.get().phase)
            except sdk.Error:
                continue  # the engine is restarting
        return added, seen

    backup, seen = await sdk_call(engine, follow)
    assert seen[-1] == types.BackupPhase.FAILED
    before = {types.BackupPhase.INITIALIZING, types.BackupPhase.STARTING, types.BackupPhase.READY}
    assert set(seen[:-1]) <= before
    assert "restarted" in engine.inv.backups[backup.id].message
    assert backup.to_checkpoint_id

    async def released() -> bool:
        """What a failed backup holds goes once it has failed: its exports, the checkpoint
        it made, the lock on its disk (the engine's cleanup runs after the phase is set)."""
        return (
            backup.id not in engine.backups.exports
            and backup.to_checkpoint_id not in engine.inv.checkpoints
            and disk.status == "ok"
        )

    await eventually(released, within=30, what="the failed backup's exports, checkpoint, lock")
    assert vm.id in engine.inv.vms  # the rest of the engine survived
