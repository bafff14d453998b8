"""The simulated engine through the real ovirtsdk4: every call Hoist makes, the SSO flow,
transfer phases, VM power transitions, events paging, and a 10,000-VM inventory."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from sim.ovirt import scenario
from sim.ovirt.engine import Engine
from sim.ovirt.sdkclient import connect, download_transfer
from tests.sim.ovirt.fixtures import new_disk


def read_inventory(engine: Engine) -> dict[str, object]:
    conn = connect(engine)
    try:
        system = conn.system_service()
        vms = system.vms_service().list(follow="nics,disk_attachments.disk")
        web = next(v for v in vms if v.name == "web-1")
        nics = conn.follow_link(web.nics)
        atts = system.vms_service().vm_service(web.id).disk_attachments_service().list()
        disk = system.disks_service().disk_service(atts[0].disk.id).get()
        return {
            "vms": sorted(v.name for v in vms),
            "web": web,
            "nics": nics,
            "atts": atts,
            "disk": disk,
            "dcs": system.data_centers_service().list(),
            "clusters": system.clusters_service().list(),
            "hosts": system.hosts_service().list(),
            "networks": system.networks_service().list(),
            "profiles": system.vnic_profiles_service().list(),
            "domains": system.storage_domains_service().list(),
            "disk_profiles": system.disk_profiles_service().list(),
        }
    finally:
        conn.close()


async def test_inventory_through_ovirtsdk4(engine: Engine) -> None:
    inv = await asyncio.to_thread(read_inventory, engine)
    assert inv["vms"] == ["db-1", "web-1"]
    web = inv["web"]
    assert isinstance(web, types.Vm)
    assert web.status == types.VmStatus.UP
    assert web.bios.type == types.BiosType.Q35_OVMF
    assert (web.cpu.topology.sockets, web.cpu.topology.cores) == (2, 2)
    assert web.memory == 2 << 30
    assert web.os.type == "rhel_8x64"
    assert [n.interface for n in web.nics] == [types.NicInterface.VIRTIO, types.NicInterface.E1000]
    assert all(n.mac.address.startswith("56:6f:") for n in web.nics)
    assert web.disk_attachments[0].disk.format == types.DiskFormat.COW
    atts = inv["atts"]
    assert isinstance(atts, list)
    assert atts[0].bootable is True
    assert atts[0].interface == types.DiskInterface.VIRTIO_SCSI
    disk = inv["disk"]
    assert isinstance(disk, types.Disk)
    assert disk.status == types.DiskStatus.OK
    assert disk.storage_type == types.DiskStorageType.IMAGE
    assert disk.provisioned_size == 24 << 20
    assert 0 < disk.actual_size < disk.provisioned_size
    assert disk.sparse is True
    networks = inv["networks"]
    assert isinstance(networks, list)
    assert {n.name: (n.vlan.id if n.vlan else None) for n in networks} == {
        "ovirtmgmt": None,
        "prod": 100,
    }
    for key in ("dcs", "clusters", "hosts", "profiles", "domains", "disk_profiles"):
        assert inv[key], key
    assert engine.logouts >= 1


async def test_wrong_password_is_an_auth_error(engine: Engine) -> None:
    def login() -> None:
        conn = connect(engine, password="nope")
        try:
            conn.system_service().vms_service().list()
        finally:
            conn.close(logout=False)

    with pytest.raises(sdk.AuthError, match="wrong user name or password"):
        await asyncio.to_thread(login)


def transfer_cycle(engine: Engine, disk_id: str) -> list[str]:
    conn = connect(engine)
    disks = conn.system_service().disks_service()
    try:
        with download_transfer(conn, disk_id) as (transfer, phases):
            assert transfer.transfer_url
            assert transfer.proxy_url
            phases.append(f"disk {disks.disk_service(disk_id).get().status.value}")
        phases.append(f"disk {disks.disk_service(disk_id).get().status.value}")
    finally:
        conn.close()
    return phases


async def test_transfer_phases_through_ovirtsdk4(engine: Engine) -> None:
    disk = new_disk(engine)
    phases = await asyncio.to_thread(transfer_cycle, engine, disk.id)
    assert phases == ["initializing", "transferring", "disk locked", "finished_success", "disk ok"]


def power_cycle(engine: Engine) -> tuple[list[str], list[int]]:
    conn = connect(engine)
    seen: list[str] = []
    try:
        system = conn.system_service()
        db = system.vms_service().list(search="name=db-1")[0]
        last = max(e.id for e in system.events_service().list())
        service = system.vms_service().vm_service(db.id)
        service.start()
        while (status := service.get().status.value) != "up":
            if not seen or seen[-1] != status:
                seen.append(status)
            time.sleep(0.02)
        seen.append("up")
        service.stop()
        while service.get().status.value != "down":
            time.sleep(0.02)
        time.sleep(0.3)
        events = system.events_service().list(from_=int(last))
        return seen, [int(e.id) for e in events]
    finally:
        conn.close()


async def test_vm_power_transitions_and_events_paging(engine: Engine) -> None:
    seen, event_ids = await asyncio.to_thread(power_cycle, engine)
    assert seen[-1] == "up"
    assert "powering_up" in seen
    assert len(event_ids) == 2
    assert event_ids == sorted(event_ids, reverse=True)  # newest first, as the engine


async def test_generated_inventory_of_10000_vms_and_its_event_stream(tmp_path: Path) -> None:
    inv = scenario.generate(10_000, seed=7)
    assert len(inv.vms) == 10_000
    assert len(inv.disks) >= 10_000
    assert len({n.mac for vm in inv.vms.values() for n in vm.nics}) == sum(
        len(vm.nics) for vm in inv.vms.values()
    )
    async with Engine(inv, [], tmp_path) as engine:
        first = inv.events[-1].id
        engine.start_churn(changes_per_second=200)
        await asyncio.sleep(0.5)

        def read() -> tuple[int, int]:
            conn = connect(engine)
            try:
                system = conn.system_service()
                vms = system.vms_service().list()
                events = system.events_service().list(from_=first)
                return len(vms), len(events)
            finally:
                conn.close()

        vms, changes = await asyncio.to_thread(read)
    assert vms == 10_000
    assert changes > 10
    assert not list((tmp_path / "images").iterdir())  # no image made for listing


SCENARIO = """
users: {admin@internal: s3cret}
networks: [{name: prod, vlan: 100}]
vms:
  - name: web-1
    firmware: uefi
    memory: 8GiB
    nics: [{network: prod, model: e1000, mac: "56:6f:00:00:00:01"}]
    disks:
      - {name: web-1-root, size: 10GiB, allocated: 0.1, format: cow, layout: scattered,
         extent: 1MiB, interface: virtio, bootable: true}
      - {name: web-1-lun, size: 1GiB, storage_type: lun}
faults:
  - {kind: disk_locked, disk: web-1-root, seconds: 2}
  - {kind: connection_reset, after_bytes: 3MiB, count: 2}
"""


def test_scenario_yaml(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    inv, faults = scenario.load(path)
    assert inv.users == {"admin@internal": "s3cret"}
    vm = next(iter(inv.vms.values()))
    assert (vm.bios_type, vm.memory, vm.nics[0].mac) == ("q35_ovmf", 8 << 30, "56:6f:00:00:00:01")
    root = inv.disk_by_name("web-1-root")
    assert (root.format, root.provisioned_size, root.actual_size) == ("cow", 10 << 30, 1 << 30)
    assert vm.disk_attachments[0].interface == "virtio"
    assert inv.disk_by_name("web-1-lun").storage_type == "lun"
    assert [f.kind for f in faults] == ["disk_locked", "connection_reset"]
    assert faults[1].after_bytes == 3 << 20
    assert faults[1].applies(root)
    bad = tmp_path / "bad.yaml"
    bad.write_text("faults: [{kind: meteor_strike}]")
    with pytest.raises(ValueError, match="fault kind 'meteor_strike'"):
        scenario.load(bad)


async def test_a_shareable_disk_attached_to_two_vms_through_ovirtsdk4(tmp_path: Path) -> None:
    """``attach`` puts an earlier VM's shareable disk on another VM: the engine lists one
    disk, ``<shareable>true</shareable>``, in both VMs' attachments (a cluster quorum disk)."""
    doc = {
        "vms": [
            {"name": "node-1", "disks": [{"name": "node-1-root"},
                                         {"name": "quorum", "shareable": True}]},
            {"name": "node-2", "disks": [{"name": "node-2-root"},
                                         {"attach": "quorum", "bootable": False}]},
        ]
    }  # fmt: skip
    inv, faults = scenario.from_dict(doc)
    async with Engine(inv, faults, tmp_path) as engine:

        def read() -> dict[str, list[types.Disk]]:
            conn = connect(engine)
            try:
                vms = conn.system_service().vms_service().list(follow="disk_attachments.disk")
                return {v.name: [a.disk for a in v.disk_attachments] for v in vms}
            finally:
                conn.close()

        disks = await asyncio.to_thread(read)
    q1 = next(d for d in disks["node-1"] if d.alias == "quorum")
    q2 = next(d for d in disks["node-2"] if d.alias == "quorum")
    assert q1.id == q2.id
    assert q1.shareable is True
    assert q2.shareable is True
    assert not next(d for d in disks["node-2"] if d.alias == "node-2-root").shareable
    with pytest.raises(ValueError, match="not shareable"):
        scenario.from_dict({"vms": [{"name": "a", "disks": [{"name": "d"}]},
                                    {"name": "b", "disks": [{"attach": "d"}]}]})  # fmt: skip
