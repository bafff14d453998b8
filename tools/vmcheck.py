"""Does a migrated KubeVirt VirtualMachine match its source VM?

The expectation is read from the source simulator's own model (``sim.ovirt.entities`` objects
in ``engine.inv``, ``sim.openstack.state`` objects in ``cloud.state``), not from the plan or
the inventory: a mistake anywhere between the source and the cluster (collection,
normalization, planning, the orchestrator's builder) shows up as a mismatch. What is
compared is what a guest notices: CPU topology, memory, firmware (BIOS/UEFI, Secure Boot),
the disks (count, which one boots, their serials and buses) and the NICs (count, MACs, the
network each is on per the network map: ``ignored`` NICs are left out), and whether the VM
runs (the plan's target power state; ``auto`` follows the source).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.planner import cputopology
from sim.openstack.state import CloudState
from sim.openstack.state import Server as OsServer
from sim.ovirt import entities as m

MIB = 1 << 20
#: oVirt disk interfaces -> the KubeVirt bus a guest keeps seeing (q35 has no IDE: SATA).
OVIRT_BUS = {"virtio": "virtio", "virtio_scsi": "scsi", "sata": "sata", "ide": "sata"}
_QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_UNITS = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
_UNITS |= {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


@dataclass
class ExpectedDisk:
    disk_id: str  # oVirt disk id, Cinder volume id, or "<server id>-root" (image-backed)
    name: str
    size: int  # guest-visible bytes
    format: str  # raw | qcow2
    boot: bool
    serial: str | None  # what the guest saw as its serial; None: an image-backed root disk
    bus: str
    path: Path | None = None  # the source image file


@dataclass
class ExpectedNic:
    mac: str
    network: str  # the source network's name
    target: str  # pod | ignored | namespace/name (Multus)


@dataclass
class ExpectedVm:
    source: str  # ovirt | openstack
    vm_id: str
    name: str
    sockets: int
    cores: int
    threads: int
    memory: int
    firmware: str  # bios | uefi
    secure_boot: bool
    running: bool | None  # None: not checked
    disks: list[ExpectedDisk] = field(default_factory=list)
    nics: list[ExpectedNic] = field(default_factory=list)


def nic_target(network_map: Mapping[str, str], network: str) -> str:
    """A scenario's network-map value as the VM shows it: ``multus:ns/name`` -> ``ns/name``."""
    target = network_map.get(network, "ignored")
    return target.removeprefix("multus:")


def _running(target_power_state: str, source_on: bool) -> bool:
    return {"on": True, "off": False}.get(target_power_state, source_on)


def from_ovirt(
    inv: m.Inventory, vm: m.Vm, network_map: Mapping[str, str], target_power_state: str
) -> ExpectedVm:
    disks = []
    for a in vm.disk_attachments:
        d = inv.disks[a.disk_id]
        disks.append(
            ExpectedDisk(
                disk_id=d.id,
                name=d.name,
                size=d.provisioned_size,
                format=d.image.fmt,
                boot=a.bootable,
                serial=d.id,
                bus=OVIRT_BUS.get(a.interface, "virtio"),
            )
        )
    nics = []
    for n in vm.nics:
        profile = inv.vnic_profiles.get(n.vnic_profile_id or "")
        network = inv.networks[profile.network_id].name if profile else ""
        nics.append(ExpectedNic(n.mac.lower(), network, nic_target(network_map, network)))
    return ExpectedVm(
        source="ovirt",
        vm_id=vm.id,
        name=vm.name,
        sockets=vm.sockets,
        cores=vm.cores,
        threads=vm.threads,
        memory=vm.memory,
        firmware="uefi" if vm.bios_type in ("q35_ovmf", "q35_secure_boot") else "bios",
        secure_boot=vm.bios_type == "q35_secure_boot",
        running=_running(target_power_state, vm.status != "down"),
        disks=disks,
        nics=nics,
    )


def from_openstack(
    state: CloudState, server: OsServer, network_map: Mapping[str, str], target_power_state: str
) -> ExpectedVm:
    """Nova keeps no topology: it lays the flavor's vCPUs out by the flavor's ``hw:cpu_*``
    extra specs and the boot image's ``hw_cpu_*`` properties at every boot (the planner's
    ``cputopology`` restates its rules); firmware from ``hw_firmware_type``."""
    disks = []
    if server.boot == "image" and server.root_path is not None:
        disks.append(
            ExpectedDisk(
                disk_id=f"{server.id}-root",
                name="root",
                size=server.root_path.stat().st_size,
                format="raw",
                boot=True,
                serial=None,
                bus="virtio",
                path=server.root_path,
            )
        )
    props: Mapping[str, str] = {}
    for i, vid in enumerate(server.volume_ids):
        vol = state.volumes[vid]
        boot = server.boot == "volume" and i == 0
        if boot:
            props = vol.image_metadata
        disks.append(
            ExpectedDisk(
                disk_id=vol.id,
                name=vol.name,
                size=vol.path.stat().st_size,
                format="raw",
                boot=boot,
                serial=vol.id,
                bus="virtio",
                path=vol.path,
            )
        )
    bus = {"scsi": "scsi", "sata": "sata", "ide": "sata"}.get(props.get("hw_disk_bus", ""))
    for d in disks:
        d.bus = bus or "virtio"
    nics = []
    for pid in server.port_ids:
        port = state.ports[pid]
        network = state.networks[port.network_id].name
        nics.append(ExpectedNic(port.mac.lower(), network, nic_target(network_map, network)))
    flavor = server.flavor
    topology = cputopology.openstack(flavor.vcpus, flavor.extra_specs, props).topology
    return ExpectedVm(
        source="openstack",
        vm_id=server.id,
        name=server.name,
        sockets=topology.sockets,
        cores=topology.cores,
        threads=topology.threads,
        memory=flavor.ram * MIB,
        firmware="uefi" if props.get("hw_firmware_type") == "uefi" else "bios",
        secure_boot=props.get("os_secure_boot") == "required",
        running=_running(target_power_state, server.status == "ACTIVE"),
        disks=disks,
        nics=nics,
    )


def quantity(value: object) -> int | None:
    """A Kubernetes quantity in bytes (``4Gi``, ``512Mi``, ``1000M``); None if it is none."""
    match = _QUANTITY.match(str(value or ""))
    if not match:
        return None
    return int(match.group(1)) * _UNITS[match.group(2)]


def _get(obj: object, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def check_vm(expected: ExpectedVm, vm: Mapping[str, Any] | None) -> list[str]:
    """Every way ``vm`` (a ``kubevirt.io/v1`` VirtualMachine) differs from ``expected``;
    empty when it matches."""
    if vm is None:
        return ["no VirtualMachine in the target namespace"]
    problems: list[str] = []
    domain = _get(vm, "spec", "template", "spec", "domain") or {}

    def differ(what: str, source: object, target: object) -> None:
        if source != target:
            problems.append(f"{what}: source {source!r}, target {target!r}")

    cpu = domain.get("cpu") or {}
    for key in ("sockets", "cores", "threads"):
        differ(f"cpu.{key}", getattr(expected, key), cpu.get(key))
    want_memory = -(-expected.memory // MIB) * MIB  # KubeVirt sizes round to whole MiB
    differ("memory.guest (bytes)", want_memory, quantity(_get(domain, "memory", "guest")))
    bootloader = _get(domain, "firmware", "bootloader") or {}
    firmware = "uefi" if "efi" in bootloader else "bios" if "bios" in bootloader else None
    differ("firmware", expected.firmware, firmware)
    secure = bool(_get(bootloader, "efi", "secureBoot")) if firmware == "uefi" else False
    differ("secure boot", expected.secure_boot, secure)
    if expected.secure_boot:
        differ("features.smm.enabled", True, _get(domain, "features", "smm", "enabled"))
    problems += _check_disks(expected, _get(domain, "devices", "disks") or [])
    problems += _check_nics(expected, vm)
    if expected.running is not None:
        want = "Always" if expected.running else "Halted"
        got = _get(vm, "spec", "runStrategy")
        if got is None and _get(vm, "spec", "running") is not None:
            got = "Always" if _get(vm, "spec", "running") else "Halted"
        differ("runStrategy", want, got)
    return problems


def _check_disks(expected: ExpectedVm, disks: list[Mapping[str, Any]]) -> list[str]:
    problems: list[str] = []
    if len(disks) != len(expected.disks):
        problems.append(f"disk count: source {len(expected.disks)}, target {len(disks)}")
    by_serial = {d.get("serial"): d for d in disks}
    for want in expected.disks:
        got = by_serial.get(want.serial)
        label = f"disk {want.name}" + (f" (serial {want.serial})" if want.serial else "")
        if got is None:
            problems.append(f"{label}: not on the VM")
            continue
        bus = _get(got, "disk", "bus") or "virtio"
        if bus != want.bus:
            problems.append(f"{label}: bus: source {want.bus!r}, target {bus!r}")
    boots = [d for d in expected.disks if d.boot] or expected.disks[:1]
    first = next((d for d in disks if d.get("bootOrder") == 1), None)
    if boots and first is None:
        problems.append(f"boot order: disk {boots[0].name} should boot first, no disk has order 1")
    elif boots and first is not None and first.get("serial") != boots[0].serial:
        problems.append(
            f"boot order: disk {boots[0].name} should boot first, the target boots "
            f"{first.get('name')} (serial {first.get('serial')!r})"
        )
    booting = sum(1 for d in disks if d.get("bootOrder") is not None)
    if booting != len(boots):
        problems.append(f"bootable disks: source {len(boots)}, target {booting}")
    return problems


def _check_nics(expected: ExpectedVm, vm: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    spec = _get(vm, "spec", "template", "spec") or {}
    interfaces = _get(spec, "domain", "devices", "interfaces") or []
    networks = {n.get("name"): n for n in spec.get("networks") or []}
    wanted = [n for n in expected.nics if n.target != "ignored"]
    if len(interfaces) != len(wanted):
        problems.append(
            f"NIC count: {len(wanted)} mapped source NICs "
            f"({len(expected.nics) - len(wanted)} ignored), target {len(interfaces)}"
        )
    by_mac = {str(i.get("macAddress") or "").lower(): i for i in interfaces}
    for nic in wanted:
        got = by_mac.get(nic.mac)
        if got is None:
            problems.append(f"NIC {nic.mac} (network {nic.network}): not on the VM")
            continue
        net = networks.get(got.get("name")) or {}
        on = "pod" if "pod" in net else _get(net, "multus", "networkName")
        if on != nic.target:
            problems.append(
                f"NIC {nic.mac} (network {nic.network}): on {on!r}, mapped to {nic.target!r}"
            )
    for nic in expected.nics:
        if nic.target == "ignored" and nic.mac in by_mac:
            problems.append(
                f"NIC {nic.mac} (network {nic.network}): ignored by the map, yet on the VM"
            )
    return problems
