"""Validation concerns of OpenStack VMs: those a cloud can show, produced in the simulated
cloud and collected for real; the rest from VM data as the collector would have built it."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from services.inventory.items import Category, Item
from services.inventory.sources.openstack import OpenStackSource
from sim.openstack.cloud import Cloud
from tests.inventory.sources.openstack.conftest import server_id


def ids(source: OpenStackSource, vm: Item) -> dict[str, Category]:
    return {c.id: c.category for c in source.assess(vm)}


async def vm_named(source: OpenStackSource, name: str) -> Item:
    batch = await source.load()
    return next(i for i in batch.items if i.kind == "vm" and i.name == name)


async def test_healthy_image_backed_vm(source: OpenStackSource) -> None:
    vm = await vm_named(source, "web-1")
    assert ids(source, vm) == {"openstack.disk.imagebacked": Category.INFORMATION}
    assert ids(source, await vm_named(source, "db-1")) == {}


async def test_no_network(source: OpenStackSource) -> None:
    found = ids(source, await vm_named(source, "lonely"))
    assert found["openstack.nic.none"] is Category.WARNING


@pytest.mark.parametrize(
    ("name", "status", "concern", "category"),
    [
        ("error-me", "ERROR", "openstack.server.error", Category.CRITICAL),
        ("shelve-me", "SHELVED_OFFLOADED", "openstack.server.shelved", Category.WARNING),
    ],
)
async def test_server_status(
    source: OpenStackSource, cloud: Cloud, name: str, status: str, concern: str,
    category: Category,
) -> None:  # fmt: skip
    cloud.state.set_server_status(server_id(cloud, name), status)
    assert ids(source, await vm_named(source, name))[concern] is category


@pytest.mark.parametrize("status", ["error", "creating", "error_restoring"])
async def test_volume_status(source: OpenStackSource, cloud: Cloud, status: str) -> None:
    vid = next(v.id for v in cloud.state.volumes.values() if v.name == "bad-volume-data-0")
    cloud.state.update_volume(vid, status=status)
    try:
        concerns = source.assess(await vm_named(source, "bad-volume"))
    finally:
        cloud.state.update_volume(vid, status="in-use")
    [c] = [c for c in concerns if c.id == "openstack.volume.status"]
    assert c.category is Category.CRITICAL
    assert vid in c.assessment
    assert status in c.assessment


async def test_multiattach_volume(source: OpenStackSource, cloud: Cloud) -> None:
    vid = next(v.id for v in cloud.state.volumes.values() if v.name == "multi-data-0")
    cloud.state.update_volume(vid, multiattach=True)
    assert ids(source, await vm_named(source, "multi"))["openstack.volume.multiattach"] is (
        Category.WARNING
    )


async def test_unsupported_vif_model(source: OpenStackSource, cloud: Cloud, conn: Any) -> None:
    """Nova takes the NIC model from the image's ``hw_vif_model``: a real Glance image."""
    image = await asyncio.to_thread(
        conn.image.create_image, name="vmware-import", disk_format="raw",
        container_format="bare", data=b"\0" * 512, hw_vif_model="vmxnet3",
    )  # fmt: skip
    try:
        cloud.state.set_server_image(server_id(cloud, "vif-me"), image.id)
        vm = await vm_named(source, "vif-me")
        assert vm.data["nics"][0]["vifModel"] == "vmxnet3"
        assert ids(source, vm)["openstack.nic.vifmodel"] is Category.WARNING
    finally:
        await asyncio.to_thread(conn.image.delete_image, image.id)


# ---------------------------------------------------------------- from data alone

BASE: dict[str, Any] = {
    "status": "SHUTOFF",
    "taskState": None,
    "boot": "volume",
    "flavor": {"name": "m1", "ephemeralGiB": 0, "swapMiB": 0},
    "imageProperties": {},
    "volumes": [{"id": "v1", "status": "in-use", "multiattach": False, "encrypted": False}],
    "nics": [{"vifModel": None, "vnicType": "normal"}],
}


def assess(source: OpenStackSource, **change: Any) -> dict[str, Category]:
    data = copy.deepcopy(BASE)
    for path, value in change.items():
        target = data
        *parents, leaf = path.split("__")
        for p in parents:
            target = target[p] if not isinstance(target[p], list) else target[p][0]
        target[leaf] = value
    return ids(source, Item("vm", "x", "x", data))


@pytest.mark.parametrize(
    ("change", "concern", "category"),
    [
        ({"status": "RESIZE"}, "openstack.server.status", Category.WARNING),
        ({"taskState": "image_snapshot"}, "openstack.server.status", Category.WARNING),
        ({"status": "PAUSED"}, "openstack.server.suspended", Category.WARNING),
        ({"volumes__encrypted": True}, "openstack.volume.encrypted", Category.CRITICAL),
        ({"volumes__status": ""}, "openstack.volume.unknown", Category.WARNING),
        ({"nics__vnicType": "direct"}, "openstack.nic.passthrough", Category.WARNING),
        ({"flavor__ephemeralGiB": 10}, "openstack.disk.ephemeral", Category.WARNING),
        ({"flavor__swapMiB": 512}, "openstack.disk.ephemeral", Category.WARNING),
        ({"imageProperties__hw_firmware_type": "uefi"}, "openstack.firmware.uefi",
         Category.INFORMATION),
    ],
)  # fmt: skip
def test_concerns_from_data(
    source: OpenStackSource, change: dict[str, Any], concern: str, category: Category
) -> None:
    assert assess(source) == {}
    assert assess(source, **change) == {concern: category}
