"""Each concern, from VMs of the simulated engine as the collector loads them."""

from __future__ import annotations

import pytest

from services.inventory.items import Batch, Category, Item
from services.inventory.sources.ovirt import OvirtSource
from sim.ovirt.engine import Engine
from tests.inventory.sources.ovirt.conftest import by_name


@pytest.fixture
async def loaded(source: OvirtSource) -> Batch:
    return await source.load()


def concerns(source: OvirtSource, vm: Item) -> dict[str, Category]:
    found = source.assess(vm)
    assert len({c.id for c in found}) == len(found), "one concern per kind"
    assert all(c.label and c.assessment for c in found)
    return {c.id: c.category for c in found}


@pytest.mark.parametrize(
    ("vm", "concern", "category"),
    [
        ("locked-1", "ovirt.disk.locked", Category.CRITICAL),
        ("illegal-1", "ovirt.disk.illegal", Category.CRITICAL),
        ("lun-1", "ovirt.disk.storage_type", Category.CRITICAL),
        ("shared-1", "ovirt.disk.shared", Category.WARNING),
        ("passthrough-1", "ovirt.nic.pass_through", Category.WARNING),
        ("unplugged-1", "ovirt.nic.no_network", Category.WARNING),
        ("balloon-1", "ovirt.vm.memory_ballooning", Category.INFORMATION),
        ("ha-1", "ovirt.vm.high_availability", Category.INFORMATION),
        ("secure-1", "ovirt.vm.secure_boot", Category.WARNING),
        ("diskless-1", "ovirt.vm.no_disks", Category.WARNING),
        ("cow-1", "ovirt.disk.cow", Category.INFORMATION),
    ],
)
async def test_concern(
    source: OvirtSource, loaded: Batch, vm: str, concern: str, category: Category
) -> None:
    found = concerns(source, by_name(loaded, "vm")[vm])
    assert found.get(concern) == category, found


async def test_clean_vm_has_no_concerns(source: OvirtSource, loaded: Batch) -> None:
    assert concerns(source, by_name(loaded, "vm")["db-1"]) == {}


async def test_concern_labels_name_the_disks(source: OvirtSource, loaded: Batch) -> None:
    lun = next(c for c in source.assess(by_name(loaded, "vm")["lun-1"]))
    assert lun.label.endswith("lun-1-lun")
    assert "lun-1-root" not in lun.label


@pytest.mark.parametrize(
    "status", ["paused", "migrating", "image_locked", "unknown", "not_responding", "suspended"]
)
async def test_invalid_status(engine: Engine, source: OvirtSource, status: str) -> None:
    await source.load()
    vm = next(v for v in engine.inv.vms.values() if v.name == "db-1")
    engine.changes.set_vm_status(vm.id, status)
    try:
        changed = by_name(await source.refresh(), "vm")["db-1"]
    finally:
        engine.changes.set_vm_status(vm.id, "down")
    assert changed.status == status
    assert concerns(source, changed) == {"ovirt.vm.status": Category.WARNING}
    assert status in source.assess(changed)[0].label


async def test_running_and_stopped_vms_are_fine(source: OvirtSource, loaded: Batch) -> None:
    for name in ("db-1", "web-1"):
        assert "ovirt.vm.status" not in concerns(source, by_name(loaded, "vm")[name])
