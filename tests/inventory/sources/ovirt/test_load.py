"""The full load of an engine through ovirtsdk4: counts, fields, parents, the event mark."""

from __future__ import annotations

from pathlib import Path

from services.inventory.items import KINDS_BY_TYPE
from services.inventory.sources.ovirt import OvirtSource
from shared.payloads import ProviderType
from sim.ovirt import scenario
from sim.ovirt.engine import Engine
from tests.inventory.sources.ovirt.conftest import by_name, make_source


async def test_full_load_counts_and_fields(engine: Engine, source: OvirtSource) -> None:
    batch = await source.load()
    inv = engine.inv
    assert batch.complete == frozenset(KINDS_BY_TYPE[ProviderType.OVIRT])
    counts: dict[str, int] = {}
    for item in batch.items:
        counts[item.kind] = counts.get(item.kind, 0) + 1
    assert counts == {
        "datacenter": len(inv.data_centers),
        "cluster": len(inv.clusters),
        "host": len(inv.hosts),
        "network": len(inv.networks),
        "nicprofile": len(inv.vnic_profiles),
        "storagedomain": len(inv.storage_domains),
        "diskprofile": len(inv.disk_profiles),
        "disk": len(inv.disks),
        "vm": len(inv.vms),
    }
    assert source.last_event == inv.events[-1].id

    web = by_name(batch, "vm")["web-1"]
    model = next(v for v in inv.vms.values() if v.name == "web-1")
    assert (web.id, web.status, web.parent) == (model.id, "up", model.cluster_id)
    data = web.data
    assert data["cluster"] == model.cluster_id
    assert data["host"] == model.host_id
    assert data["cpu"] == {"sockets": 2, "cores": 2, "threads": 1}
    assert data["memory"] == 2 << 30
    assert (data["firmware"], data["secure_boot"], data["machine_type"]) == ("uefi", False, "q35")
    assert data["os_type"] == "rhel_8x64"
    assert data["description"] == "front end"
    assert (data["high_availability"], data["memory_ballooning"]) == (False, False)

    prod = by_name(batch, "network")["prod"]
    assert prod.data["vlan"] == 100
    profiles = {p.id: p for p in batch.items if p.kind == "nicprofile"}
    nic1, nic2 = data["nics"]
    assert (nic1["name"], nic1["interface"], nic1["network"]) == ("nic1", "virtio", prod.id)
    assert profiles[nic1["vnic_profile"]].parent == prod.id
    assert nic1["mac"] == model.nics[0].mac
    assert (nic2["interface"], nic2["pass_through"]) == ("e1000", False)
    assert nic2["network"] == by_name(batch, "network")["ovirtmgmt"].id

    root, second = data["disks"]
    domain = next(iter(inv.storage_domains.values()))
    assert root == {
        "id": inv.disk_by_name("web-1-root").id,
        "interface": "virtio",
        "bootable": True,
        "active": True,
        "logical_name": None,
        "name": "web-1-root",
        "provisioned_size": 1 << 30,
        "actual_size": 1 << 29,
        "format": "raw",
        "sparse": True,
        "status": "ok",
        "storage_type": "image",
        "shareable": False,
        "storage_domain": domain.id,
        "backup": "none",  # the engine reports it for every disk (incremental or none)
    }
    assert (second["name"], second["bootable"], second["interface"]) == (
        "web-1-data",
        False,
        "virtio_scsi",
    )

    disks = by_name(batch, "disk")
    assert disks["web-1-root"].parent == domain.id
    assert disks["web-1-root"].data["disk_profile"] == next(iter(inv.disk_profiles))
    assert disks["floating-1"].status == "ok"
    assert by_name(batch, "vm")["db-1"].data["host"] is None
    assert by_name(batch, "storagedomain")["data"].data["storage_type"] == "nfs"
    assert by_name(batch, "host")["host1"].parent == next(iter(inv.clusters))
    assert by_name(batch, "cluster")["Default"].parent == next(iter(inv.data_centers))


async def test_unchanged_engine_loads_identically(engine: Engine, source: OvirtSource) -> None:
    """Two loads of an unchanged engine hash alike: the store keeps every revision."""
    first = {i.key: i.digest() for i in (await source.load()).items}
    second = {i.key: i.digest() for i in (await source.load()).items}
    assert first == second


async def test_10000_generated_vms_load(tmp_path: Path) -> None:
    inv = scenario.generate(10_000)
    async with Engine(inv, [], tmp_path) as engine:
        src = make_source(engine)
        try:
            await src.probe()
            batch = await src.load()
        finally:
            await src.close()
    vms = [i for i in batch.items if i.kind == "vm"]
    assert len(vms) == 10_000
    assert sum(1 for i in batch.items if i.kind == "disk") == len(inv.disks)
    assert sum(len(v.data["disks"]) for v in vms) == len(inv.disks)
    assert all(d["name"] for v in vms for d in v.data["disks"])  # every disk joined
