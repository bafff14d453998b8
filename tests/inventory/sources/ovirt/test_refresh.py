"""Refresh from engine events: only what changed comes back, deletions included."""

from __future__ import annotations

import asyncio
import time

from services.inventory.sources.ovirt import OvirtSource
from sim.ovirt.engine import Engine
from sim.ovirt.sdkclient import connect, download_transfer
from tests.inventory.sources.ovirt.conftest import by_name


def vm_id(engine: Engine, name: str) -> str:
    return next(v.id for v in engine.inv.vms.values() if v.name == name)


async def test_nothing_changed_gives_an_empty_batch(source: OvirtSource) -> None:
    await source.load()
    mark = source.last_event
    batch = await source.refresh()
    assert batch.empty
    assert source.last_event == mark


def stop_through_the_api(engine: Engine, vm: str) -> None:
    """What a user does: stop the VM with ovirtsdk4, then wait until the engine says down."""
    conn = connect(engine)
    try:
        service = conn.system_service().vms_service().vm_service(vm)
        service.stop()
        deadline = time.monotonic() + 10
        while service.get().status.value != "down":
            assert time.monotonic() < deadline, "the VM did not stop"
            time.sleep(0.05)
    finally:
        conn.close()


async def test_stopped_vm_is_reemitted(engine: Engine, source: OvirtSource) -> None:
    await source.load()
    vm = vm_id(engine, "stop-me")
    await asyncio.to_thread(stop_through_the_api, engine, vm)
    await asyncio.sleep(0.3)  # the engine logs the event once the VM is down
    batch = await source.refresh()
    vms = by_name(batch, "vm")
    assert set(vms) == {"stop-me"}
    assert (vms["stop-me"].status, vms["stop-me"].data["host"]) == ("down", None)
    assert source.last_event == engine.inv.events[-1].id
    assert (await source.refresh()).empty


async def test_vm_change_through_events(engine: Engine, source: OvirtSource) -> None:
    await source.load()
    vm = vm_id(engine, "web-1")
    engine.changes.update_vm(vm, memory=8 << 30, ballooning=True)
    batch = await source.refresh()
    web = by_name(batch, "vm")["web-1"]
    assert web.data["memory"] == 8 << 30
    assert web.data["memory_ballooning"] is True
    assert "ovirt.vm.memory_ballooning" in {c.id for c in source.assess(web)}
    assert not batch.deleted
    engine.changes.update_vm(vm, memory=2 << 30, ballooning=False)  # as the scenario had it
    await source.refresh()


async def test_removed_vm_and_its_disks_are_deleted(engine: Engine, source: OvirtSource) -> None:
    await source.load()
    vm = vm_id(engine, "remove-me")
    disks = {a.disk_id for a in engine.inv.vms[vm].disk_attachments}
    engine.changes.remove_vm(vm)
    batch = await source.refresh()
    assert not batch.items
    assert set(batch.deleted) == {("vm", vm)} | {("disk", d) for d in disks}


async def test_changed_disk_reemits_its_vm(engine: Engine, source: OvirtSource) -> None:
    await source.load()
    disk = engine.inv.disk_by_name("disk-changes-root")
    engine.changes.update_disk(disk.id, status="illegal")
    batch = await source.refresh()
    assert by_name(batch, "disk")["disk-changes-root"].status == "illegal"
    vm = by_name(batch, "vm")["disk-changes"]
    assert vm.data["disks"][0]["status"] == "illegal"
    assert "ovirt.disk.illegal" in {c.id for c in source.assess(vm)}

    engine.changes.update_disk(disk.id, status="ok")
    vm = by_name(await source.refresh(), "vm")["disk-changes"]
    assert vm.data["disks"][0]["status"] == "ok"


async def test_transfer_locks_show_up(engine: Engine, source: OvirtSource) -> None:
    """An image transfer's events (initiated, then finished) name the disk's VM."""
    await source.load()
    disk = engine.inv.disk_by_name("db-1-root")

    def transfer() -> None:
        conn = connect(engine)
        try:
            with download_transfer(conn, disk.id):
                pass
        finally:
            conn.close()

    await asyncio.to_thread(transfer)
    batch = await source.refresh()
    assert set(by_name(batch, "vm")) == {"db-1"}
    assert by_name(batch, "disk")["db-1-root"].status == "ok"  # finished: unlocked again


async def test_floating_disk_changes_through_its_storage_domain(
    engine: Engine, source: OvirtSource
) -> None:
    """Events about a disk on no VM name only its storage domain: its disks are compared."""
    await source.load()
    floating = engine.inv.disk_by_name("floating-1")
    engine.changes.update_disk(floating.id, shareable=True)
    batch = await source.refresh()
    changed = by_name(batch, "disk")
    assert set(changed) == {"floating-1"}  # the domain's other disks did not change
    assert changed["floating-1"].data["shareable"] is True
    assert not by_name(batch, "vm")
    assert by_name(batch, "storagedomain")["data"]

    gone = engine.inv.disk_by_name("floating-2")
    engine.changes.remove_disk(gone.id)
    batch = await source.refresh()
    assert batch.deleted == [("disk", gone.id)]
