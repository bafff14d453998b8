"""A source VM, as the inventory normalized it, seen the way a migration needs it.

oVirt and OpenStack describe a VM differently (disk attachments with storage domains vs.
Cinder volumes, a Glance image and a flavor; vNIC profiles vs. Neutron ports). Validation
and the frozen plan only need: the disks (size, format, which storage they come from, boot
order, bus), the NICs (MAC, model, source network) and the machine (CPU, memory, firmware).
This module is the one place that knows each source's field names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.planner import cputopology
from shared.payloads import ProviderType
from shared.sizing import GIB, MIB

Obj = dict[str, Any]

GLANCE = "glance"
#: The provider types a plan migrates from (the others are targets).
SOURCE_TYPES = (ProviderType.OVIRT, ProviderType.OPENSTACK)

# oVirt disk interfaces -> KubeVirt disk buses (KubeVirt has no IDE: SATA is the equivalent).
_OVIRT_BUS = {"virtio": "virtio", "virtio_scsi": "scsi", "sata": "sata", "ide": "sata"}
# oVirt NIC interfaces -> KubeVirt interface models.
_OVIRT_MODEL = {"virtio": "virtio", "e1000": "e1000", "e1000e": "e1000e", "rtl8139": "rtl8139"}


@dataclass(frozen=True)
class SourceDisk:
    id: str
    name: str
    size_bytes: int | None
    format: str  # raw or qcow2
    storage: str  # storage domain id, volume type (name), or "glance"
    boot: bool
    bus: str
    #: oVirt's ``backup`` (``incremental`` or ``none``): a warm copy needs ``incremental``.
    #: None when the source has no such setting (OpenStack) or the inventory predates it.
    backup: str | None = None
    #: oVirt's ``shareable``: the disk may be attached to several VMs at once.
    shareable: bool = False


@dataclass(frozen=True)
class SourceNic:
    id: str
    name: str
    mac: str | None
    model: str
    network: str | None  # source network id; None: not connected


def disks(ptype: ProviderType, vm: Obj) -> list[SourceDisk]:
    data = vm.get("data") or {}
    if ptype is ProviderType.OPENSTACK:
        return _openstack_disks(vm["id"], data)
    out = []
    for a in data.get("disks") or []:
        size = a.get("provisioned_size")
        out.append(
            SourceDisk(
                id=str(a["id"]),
                name=str(a.get("name") or a["id"]),
                size_bytes=int(size) if size is not None else None,
                format="qcow2" if a.get("format") == "cow" else "raw",
                storage=str(a.get("storage_domain") or ""),
                boot=bool(a.get("bootable")),
                bus=_OVIRT_BUS.get(str(a.get("interface") or "virtio"), "virtio"),
                backup=a.get("backup"),
                shareable=bool(a.get("shareable")),
            )
        )
    return out


def root_disk_id(server_id: str) -> str:
    """The id an image-backed server's root disk goes by (it has none in the cloud: the
    orchestrator snapshots it into an image, whose id is not known yet)."""
    return f"{server_id}-root"


def _openstack_disks(server_id: str, data: Obj) -> list[SourceDisk]:
    out = []
    if data.get("boot") == "image":
        flavor = data.get("flavor") or {}
        gib = flavor.get("diskGiB") or 0
        size = gib * GIB if gib else None
        out.append(
            SourceDisk(
                id=root_disk_id(server_id),
                name="root",
                size_bytes=size,
                format="raw",
                storage=GLANCE,
                boot=True,
                bus=_openstack_bus(data),
            )
        )
    for v in data.get("volumes") or []:
        gib = v.get("sizeGiB")
        out.append(
            SourceDisk(
                id=str(v["id"]),
                name=str(v.get("name") or v["id"]),
                size_bytes=int(gib) * GIB if gib is not None else None,
                format="raw",
                storage=str(v.get("volumeType") or ""),
                boot=v.get("bootIndex") == 0,
                bus=_openstack_bus(data),
            )
        )
    return out


def _openstack_bus(data: Obj) -> str:
    bus = str((data.get("imageProperties") or {}).get("hw_disk_bus") or "virtio")
    return {"scsi": "scsi", "sata": "sata", "ide": "sata"}.get(bus, "virtio")


def nics(ptype: ProviderType, vm: Obj) -> list[SourceNic]:
    data = vm.get("data") or {}
    out = []
    if ptype is ProviderType.OPENSTACK:
        for i, n in enumerate(data.get("nics") or []):
            out.append(
                SourceNic(
                    id=str(n.get("portId") or n.get("mac") or f"nic-{i}"),
                    name=f"nic{i}",
                    mac=n.get("mac"),
                    model=str(n.get("vifModel") or "virtio"),
                    network=n.get("networkId"),
                )
            )
        return out
    for n in data.get("nics") or []:
        out.append(
            SourceNic(
                id=str(n["id"]),
                name=str(n.get("name") or n["id"]),
                mac=n.get("mac"),
                model=_OVIRT_MODEL.get(str(n.get("interface") or "virtio"), "virtio"),
                network=n.get("network") or None,
            )
        )
    return out


def power_state(ptype: ProviderType, vm: Obj) -> str:
    """``on`` or ``off`` as the source VM is now (the target's power state may follow)."""
    data = vm.get("data") or {}
    if ptype is ProviderType.OPENSTACK:
        return "on" if data.get("powerState") == "running" else "off"
    return "off" if str(data.get("status") or "").lower() == "down" else "on"


def cpu_topology(data: Obj) -> cputopology.Choice:
    """What Nova chose for an OpenStack VM's ``data``: its flavor's vCPUs laid out by the
    flavor extra specs and the image properties (``cputopology`` says how)."""
    flavor = data.get("flavor") or {}
    try:
        vcpus = int(flavor.get("vcpus") or 0)
    except (TypeError, ValueError):
        vcpus = 0
    return cputopology.openstack(
        vcpus, flavor.get("extraSpecs") or {}, data.get("imageProperties") or {}
    )


def machine(ptype: ProviderType, vm: Obj) -> Obj:
    """CPU, memory and firmware in one vocabulary, plus the source's normalized fields."""
    data = {k: v for k, v in (vm.get("data") or {}).items() if k != "raw"}
    if ptype is ProviderType.OPENSTACK:
        flavor = data.get("flavor") or {}
        props = data.get("imageProperties") or {}
        firmware = "uefi" if props.get("hw_firmware_type") == "uefi" else "bios"
        return {
            "sourceType": ptype.value,
            "cpu": cpu_topology(data).topology.as_dict(),
            "memoryBytes": int(flavor.get("ramMiB") or 0) * MIB,
            "firmware": firmware,
            "secureBoot": props.get("os_secure_boot") == "required",
            "machineType": props.get("hw_machine_type"),
            "osType": props.get("os_distro"),
            "description": "",
            "source": data,
        }
    cpu = data.get("cpu") or {}
    return {
        "sourceType": ptype.value,
        "cpu": {k: int(cpu.get(k) or 1) for k in ("sockets", "cores", "threads")},
        "memoryBytes": int(data.get("memory") or 0),
        "firmware": data.get("firmware") or "bios",
        "secureBoot": bool(data.get("secure_boot")),
        "machineType": data.get("machine_type"),
        "osType": data.get("os_type"),
        "description": data.get("description") or "",
        "source": data,
    }
