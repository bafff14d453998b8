"""Full load and incremental refresh of the OpenStack source against the simulated cloud."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from services.inventory.items import KINDS_BY_TYPE, Batch, Item
from services.inventory.sources.openstack import OpenStackSource
from shared.payloads import ProviderType
from sim.openstack import scenario as sc
from sim.openstack.cloud import Cloud
from tests.inventory.sources.openstack.conftest import SCENARIO, server_id


def by_key(batch: Batch) -> dict[tuple[str, str], Item]:
    return {i.key: i for i in batch.items}


def vms(batch: Batch) -> dict[str, Item]:
    return {i.name: i for i in batch.items if i.kind == "vm"}


async def test_full_load(source: OpenStackSource, cloud: Cloud) -> None:
    batch = await source.load()
    assert batch.complete == frozenset(KINDS_BY_TYPE[ProviderType.OPENSTACK])
    counts = Counter(i.kind for i in batch.items)
    assert counts["vm"] >= len(SCENARIO.servers)  # other tests may have added none, only changed
    assert counts["flavor"] == 2
    assert counts["volumetype"] == 2
    assert counts["network"] == 2
    assert counts["subnet"] == 2
    assert counts["project"] == 1
    assert counts["volume"] >= 4
    by = vms(batch)

    web = by["web-1"]
    assert web.parent == cloud.project_id
    assert web.status in ("ACTIVE", "SHUTOFF")
    assert web.data["boot"] == "image"
    assert web.data["imageId"]
    assert web.data["flavor"] == {
        "id": None, "name": "m1.small", "vcpus": 2, "ramMiB": 2048, "diskGiB": 20,
        "ephemeralGiB": 0, "swapMiB": 0, "extraSpecs": {"hw:cpu_cores": "2"},
    }  # fmt: skip
    flavors = {i.name: i for i in batch.items if i.kind == "flavor"}
    assert flavors["m1.large"].data["extraSpecs"] == {
        "hw:cpu_sockets": "2", "hw:cpu_max_threads": "1",
    }  # fmt: skip
    [data] = web.data["volumes"]
    assert data["name"] == "web-1-data"
    assert data["device"] == "/dev/vdb"
    assert data["bootIndex"] is None
    assert data["sizeGiB"] == 1
    assert data["volumeType"] == "standard"
    assert data["status"] == "in-use"
    assert not data["bootable"]
    assert not data["multiattach"]
    [nic] = web.data["nics"]
    assert nic["networkName"] == "private"
    assert nic["ips"][0].startswith("10.1.0.")
    assert nic["mac"].startswith("fa:16:3e:")
    assert nic["vnicType"] == "normal"
    assert web.data["availabilityZone"] == "nova"
    assert web.data["metadata"] == {}

    db = by["db-1"]
    assert db.data["boot"] == "volume"
    assert db.data["imageId"] is None
    assert db.data["status"] == "SHUTOFF"
    assert db.data["powerState"] == "shutdown"
    root, logs = db.data["volumes"]
    assert (root["name"], root["bootIndex"], root["bootable"]) == ("db-1-root", 0, True)
    assert (logs["name"], logs["bootIndex"], logs["volumeType"]) == ("db-1-logs", None, "ssd")
    assert sorted(n["networkName"] for n in db.data["nics"]) == ["private", "storage"]
    assert by["lonely"].data["nics"] == []

    items = by_key(batch)
    vol = items[("volume", root["id"])]
    assert vol.status == "in-use"
    assert vol.parent == cloud.project_id
    assert vol.data["attachments"] == [{"serverId": db.id, "device": "/dev/vda"}]


async def test_nothing_changed_sends_nothing_new(source: OpenStackSource) -> None:
    loaded = by_key(await source.load())
    again = await source.refresh()
    assert not again.deleted
    assert "vm" not in again.complete
    assert "image" not in again.complete
    for item in again.items:  # re-sent (relisted, or inside the overlap): hash-identical
        assert item.digest() == loaded[item.key].digest(), item.key


async def test_stopped_server(source: OpenStackSource, cloud: Cloud, conn: Any) -> None:
    await source.load()
    sid = server_id(cloud, "stop-me")
    await asyncio.to_thread(conn.compute.stop_server, sid)
    batch = await source.refresh()
    vm = by_key(batch)[("vm", sid)]
    assert vm.status == "SHUTOFF"
    assert vm.data["powerState"] == "shutdown"


async def test_deleted_server(source: OpenStackSource, cloud: Cloud, conn: Any) -> None:
    await source.load()
    sid = server_id(cloud, "delete-me")
    await asyncio.to_thread(conn.compute.delete_server, sid)
    batch = await source.refresh()
    assert ("vm", sid) in batch.deleted
    assert ("vm", sid) not in by_key(batch)
    full = await source.load()  # a full load does not list it at all
    assert ("vm", sid) not in by_key(full)


async def test_new_image(source: OpenStackSource, conn: Any) -> None:
    await source.load()
    image = await asyncio.to_thread(
        conn.image.create_image, name="fresh", disk_format="raw", container_format="bare",
        data=b"\0" * 4096, hw_vif_model="virtio",
    )  # fmt: skip
    try:
        batch = await source.refresh()
        item = by_key(batch)[("image", image.id)]
        assert item.name == "fresh"
        assert item.status == "active"
        assert item.data["properties"]["hw_vif_model"] == "virtio"
        assert item.data["diskFormat"] == "raw"
        assert item.data["size"] == 4096
        quiet = await source.refresh()  # inside the overlap: re-sent, unchanged
        assert all(i.digest() == item.digest() for i in quiet.items if i.key == item.key)
    finally:
        await asyncio.to_thread(conn.image.delete_image, image.id)


async def test_changed_volume_re_emits_its_vm(source: OpenStackSource, cloud: Cloud) -> None:
    """Cinder changes a volume; Nova's ``updated`` of its server stays: the VM is re-emitted
    all the same, with the volume's new status."""
    before = vms(await source.load())["vol-change"]
    vid = next(v.id for v in cloud.state.volumes.values() if v.name == "vol-change-data-0")
    cloud.state.update_volume(vid, status="error")
    try:
        batch = await source.refresh()
        vm = by_key(batch)[("vm", before.id)]
        assert vm.data["updatedAt"] == before.data["updatedAt"]  # Nova saw no change
        assert vm.data["volumes"][0]["status"] == "error"
        assert by_key(batch)[("volume", vid)].status == "error"
    finally:
        cloud.state.update_volume(vid, status="in-use")


async def test_image_backed_uefi_server_and_its_security_groups(
    source: OpenStackSource, cloud: Cloud
) -> None:
    """An image-backed server's image properties come from its Glance image (the simulator
    registers it, with the scenario's ``image_properties``); its security groups are the
    names Nova gives."""
    added = await asyncio.to_thread(
        cloud.add_server,
        sc.Server(
            name="uefi-image",
            flavor="m1.small",
            root=sc.Disk(size_mib=4, data_mib=0),
            networks=["private"],
            image_properties={"hw_firmware_type": "uefi", "hw_machine_type": "q35"},
        ),
    )
    by = vms(await source.load())
    vm = by["uefi-image"]
    assert vm.data["boot"] == "image"
    assert vm.data["imageId"] == added.image_id
    assert vm.data["imageProperties"] == {"hw_firmware_type": "uefi", "hw_machine_type": "q35"}
    assert vm.data["securityGroups"] == ["default"]
    assert by["web-1"].data["imageProperties"] == {}  # its image has no properties
    assert by["lonely"].data["securityGroups"] == []  # no port, so no group
