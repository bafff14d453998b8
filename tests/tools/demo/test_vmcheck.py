"""The VirtualMachine check against the simulators' own models: a VM the orchestrator's
builder made from a faithful plan matches; each kind of difference is named."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import pytest

from services.orchestrator.virtualmachines import virtual_machine
from shared import payloads as p
from sim.openstack import scenario as os_sc
from sim.openstack.state import CloudState
from sim.ovirt import entities as m
from sim.ovirt.scenario import from_dict
from tools import vmcheck

NETWORKS = {"ovirtmgmt": "pod", "prod": "multus:migrated/prod", "backup": "ignored"}
OVIRT = {
    "networks": [{"name": "prod"}, {"name": "backup"}],
    "vms": [
        {
            "name": "db-1",
            "status": "down",
            "memory": "3GiB",
            "cpu": {"sockets": 2, "cores": 3, "threads": 2},
            "firmware": "uefi-secure-boot",
            "nics": [{"network": "ovirtmgmt"}, {"network": "prod"}, {"network": "backup"}],
            "disks": [
                {"name": "data", "size": "2MiB", "interface": "sata", "bootable": False},
                {"name": "root", "size": "4MiB", "interface": "virtio_scsi", "bootable": True},
            ],
        }
    ],
}


def _planned_vm(expected: vmcheck.ExpectedVm, detail: dict[str, Any]) -> p.PlannedVm:
    """The plan the planner would freeze for this VM, built from the expectation."""
    disks = [
        p.PlannedDisk(
            disk_id=d.disk_id, name=d.name, size_bytes=d.size, format=d.format,
            source_storage="glance" if d.serial is None else "data", boot=d.boot,
            bus={"scsi": "virtio_scsi"}.get(d.bus, d.bus), pvc_name=f"pvc-{i}",
            storage_class="standard", volume_mode="Block", access_mode="ReadWriteOnce",
        )
        for i, d in enumerate(expected.disks)
    ]  # fmt: skip
    nics = [
        p.PlannedNic(nic_id=f"n{i}", mac=n.mac, source_network=n.network, target=n.target)
        for i, n in enumerate(expected.nics)
    ]
    return p.PlannedVm(
        vm_id=expected.vm_id, name=expected.name, target_name=expected.name,
        disks=disks, nics=nics, detail=detail,
    )  # fmt: skip


def _built(expected: vmcheck.ExpectedVm, detail: dict[str, Any]) -> dict[str, Any]:
    ref = p.ProviderRef(
        id="x", type=p.ProviderType.OVIRT, url="", secret=p.ResourceRef(namespace="h", name="s")
    )
    started = p.PlanStarted(
        plan_id=str(uuid.uuid4()), migration_id=str(uuid.uuid4()), plan_name="t",
        source=ref, target=ref, target_namespace="migrated", vms=[],
    )  # fmt: skip
    planned = _planned_vm(expected, detail)
    return virtual_machine(started, planned, {}, running=bool(expected.running))


@pytest.fixture
def ovirt() -> tuple[vmcheck.ExpectedVm, dict[str, Any]]:
    inv, _ = from_dict(OVIRT)
    vm = next(iter(inv.vms.values()))
    expected = vmcheck.from_ovirt(inv, vm, NETWORKS, "auto")
    detail = {
        "cpu": {"sockets": vm.sockets, "cores": vm.cores, "threads": vm.threads},
        "memoryBytes": vm.memory,
        "firmware": "uefi",
        "secureBoot": True,
    }
    return expected, _built(expected, detail)


def test_the_expectation_reads_the_ovirt_model(
    ovirt: tuple[vmcheck.ExpectedVm, dict[str, Any]],
) -> None:
    expected, _ = ovirt
    assert (expected.sockets, expected.cores, expected.threads) == (2, 3, 2)
    assert expected.memory == 3 << 30
    assert expected.running is False
    assert (expected.firmware, expected.secure_boot) == ("uefi", True)
    assert [(d.name, d.boot, d.bus) for d in expected.disks] == [
        ("data", False, "sata"), ("root", True, "scsi")
    ]  # fmt: skip
    assert [n.target for n in expected.nics] == ["pod", "migrated/prod", "ignored"]


def test_a_faithful_vm_matches(ovirt: tuple[vmcheck.ExpectedVm, dict[str, Any]]) -> None:
    expected, vm = ovirt
    assert vmcheck.check_vm(expected, vm) == []


def _domain(vm: dict[str, Any]) -> dict[str, Any]:
    return vm["spec"]["template"]["spec"]["domain"]  # type: ignore[no-any-return]


def _mutations() -> list[tuple[str, Any]]:
    def cpu(vm: dict[str, Any]) -> None:
        _domain(vm)["cpu"]["cores"] = 1

    def memory(vm: dict[str, Any]) -> None:
        _domain(vm)["memory"]["guest"] = "2Gi"

    def bios(vm: dict[str, Any]) -> None:
        _domain(vm)["firmware"]["bootloader"] = {"bios": {}}

    def insecure(vm: dict[str, Any]) -> None:
        _domain(vm)["firmware"]["bootloader"]["efi"]["secureBoot"] = False
        del _domain(vm)["features"]["smm"]

    def disk_lost(vm: dict[str, Any]) -> None:
        _domain(vm)["devices"]["disks"].pop()

    def boot_swapped(vm: dict[str, Any]) -> None:
        disks = _domain(vm)["devices"]["disks"]
        disks[0].pop("bootOrder")
        disks[1]["bootOrder"] = 1

    def bus(vm: dict[str, Any]) -> None:
        _domain(vm)["devices"]["disks"][0]["disk"]["bus"] = "virtio"

    def mac(vm: dict[str, Any]) -> None:
        _domain(vm)["devices"]["interfaces"][0]["macAddress"] = "02:00:00:00:00:01"

    def network(vm: dict[str, Any]) -> None:
        vm["spec"]["template"]["spec"]["networks"][1]["multus"]["networkName"] = "migrated/x"

    def ignored_kept(vm: dict[str, Any]) -> None:
        interfaces = _domain(vm)["devices"]["interfaces"]
        extra = copy.deepcopy(interfaces[1])
        extra["macAddress"] = _IGNORED_MAC[0]
        interfaces.append(extra)

    def running(vm: dict[str, Any]) -> None:
        vm["spec"]["runStrategy"] = "Always"

    return [
        ("cpu.cores: source 3, target 1", cpu),
        ("memory.guest (bytes): source 3221225472, target 2147483648", memory),
        ("firmware: source 'uefi', target 'bios'", bios),
        ("secure boot: source True, target False", insecure),
        ("disk count: source 2, target 1", disk_lost),
        ("boot order: disk root should boot first, the target boots disk-0", boot_swapped),
        ("disk root (serial", bus),
        ("not on the VM", mac),
        ("on 'migrated/x', mapped to 'migrated/prod'", network),
        ("ignored by the map, yet on the VM", ignored_kept),
        ("runStrategy: source 'Halted', target 'Always'", running),
    ]


_IGNORED_MAC: list[str] = []


@pytest.mark.parametrize(("message", "mutate"), _mutations(), ids=[m for m, _ in _mutations()])
def test_each_difference_is_named(
    ovirt: tuple[vmcheck.ExpectedVm, dict[str, Any]], message: str, mutate: Any
) -> None:
    expected, vm = ovirt
    _IGNORED_MAC[:] = [n.mac for n in expected.nics if n.target == "ignored"]
    mutate(vm)
    problems = vmcheck.check_vm(expected, vm)
    assert any(message in problem for problem in problems), problems


def test_no_vm_at_all(ovirt: tuple[vmcheck.ExpectedVm, dict[str, Any]]) -> None:
    assert vmcheck.check_vm(ovirt[0], None) == ["no VirtualMachine in the target namespace"]


def test_openstack_servers(tmp_path: Path) -> None:
    scenario = os_sc.Scenario(
        flavors=[os_sc.Flavor(name="m1", vcpus=3, ram_mib=1536)],
        networks=[os_sc.Network(name="private"), os_sc.Network(name="storage", cidr="10.1.0.0/24")],
        servers=[
            os_sc.Server(
                name="img", flavor="m1", boot="image", root=os_sc.Disk(size_mib=2, data_mib=1),
                volumes=[os_sc.Volume(size_mib=1, data_mib=1)], networks=["private"],
            ),
            os_sc.Server(
                name="vol", flavor="m1", boot="volume", root=os_sc.Disk(size_mib=2, data_mib=1),
                networks=["private", "storage"], status="SHUTOFF",
            ),
        ],
    )  # fmt: skip
    state = CloudState(tmp_path)
    state.load(scenario, "project")
    by_name = {s.name: s for s in state.servers.values()}
    nets = {"private": "pod", "storage": "multus:migrated/storage"}
    img = vmcheck.from_openstack(state, by_name["img"], nets, "auto")
    assert [(d.serial is None, d.boot, d.size) for d in img.disks] == [
        (True, True, 2 << 20), (False, False, 1 << 20)
    ]  # fmt: skip
    assert (img.sockets, img.cores, img.memory, img.running) == (3, 1, 1536 << 20, True)
    vol = vmcheck.from_openstack(state, by_name["vol"], nets, "on")
    assert [d.boot for d in vol.disks] == [True]
    assert vol.running is True
    assert [n.target for n in vol.nics] == ["pod", "migrated/storage"]
    detail = {"cpu": {"sockets": 3}, "memoryBytes": 1536 << 20, "firmware": "bios"}
    for expected in (img, vol):
        assert vmcheck.check_vm(expected, _built(expected, detail)) == []
    state.volumes[state.servers[vol.vm_id].volume_ids[0]].image_metadata = {
        "hw_firmware_type": "uefi"
    }
    uefi = vmcheck.from_openstack(state, by_name["vol"], nets, "on")
    assert "firmware: source 'uefi', target 'bios'" in vmcheck.check_vm(uefi, _built(vol, detail))


def test_quantities() -> None:
    assert vmcheck.quantity("4Gi") == 4 << 30
    assert vmcheck.quantity("1536Mi") == 1536 << 20
    assert vmcheck.quantity("1G") == 10**9
    assert vmcheck.quantity("12345") == 12345
    assert vmcheck.quantity("lots") is None
    assert vmcheck.quantity(None) is None


def test_unconnected_nics_count_as_ignored() -> None:
    inv, _ = from_dict({"vms": [{"name": "a", "nics": [{"network": ""}], "disks": [{}]}]})
    vm: m.Vm = next(iter(inv.vms.values()))
    expected = vmcheck.from_ovirt(inv, vm, {}, "on")
    assert [(n.network, n.target) for n in expected.nics] == [("", "ignored")]
