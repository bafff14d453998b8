"""ovirtsdk4 objects -> inventory ``Item``s, with the fields later steps need.

Keys follow the oVirt API's own names (``provisioned_size``, ``storage_type``,
``pass_through``) so a reader who knows oVirt finds them. A VM embeds what its concerns,
the planner (network and storage maps) and the orchestrator (the KubeVirt VM spec) need:
status, placement, CPU topology, memory, firmware, machine type, NICs with their network,
and disks with a summary of each disk. No raw SDK dump is kept: the normalized fields are
the detail, and they stay small (about 1 KiB per VM).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from services.inventory.items import Item


def enum(value: Any) -> str | None:
    """An SDK enum's API value (``VmStatus.UP`` -> ``up``); None stays None."""
    if value is None:
        return None
    return str(value.value) if isinstance(value, Enum) else str(value)


def ref(obj: Any) -> str | None:
    """The id of a referenced object (``<cluster id=..>``), or None."""
    return str(obj.id) if obj is not None and obj.id else None


def _name(obj: Any) -> str:
    return str(obj.name or getattr(obj, "alias", None) or obj.id)


@dataclass(frozen=True)
class Profile:
    network: str | None
    pass_through: bool


@dataclass
class Lookups:
    """What normalizing a VM needs from other collections."""

    profiles: dict[str, Profile] = field(default_factory=dict)
    cluster_bios: dict[str, str] = field(default_factory=dict)
    disks: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> disk summary

    def add_profiles(self, profiles: Iterable[Any]) -> None:
        for p in profiles:
            mode = enum(p.pass_through.mode) if p.pass_through is not None else None
            self.profiles[str(p.id)] = Profile(ref(p.network), mode == "enabled")


def datacenter(dc: Any) -> Item:
    return Item(
        "datacenter",
        str(dc.id),
        _name(dc),
        {"status": enum(dc.status), "local": dc.local, "description": dc.description or ""},
        status=enum(dc.status) or "",
    )


def cluster(c: Any) -> Item:
    version = f"{c.version.major}.{c.version.minor}" if c.version is not None else None
    return Item(
        "cluster",
        str(c.id),
        _name(c),
        {
            "data_center": ref(c.data_center),
            "cpu_type": c.cpu.type if c.cpu is not None else None,
            "bios_type": enum(c.bios_type),
            "version": version,
        },
        parent=ref(c.data_center) or "",
    )


def host(h: Any) -> Item:
    return Item(
        "host",
        str(h.id),
        _name(h),
        {"cluster": ref(h.cluster), "address": h.address, "status": enum(h.status)},
        status=enum(h.status) or "",
        parent=ref(h.cluster) or "",
    )


def network(n: Any) -> Item:
    return Item(
        "network",
        str(n.id),
        _name(n),
        {
            "data_center": ref(n.data_center),
            "vlan": n.vlan.id if n.vlan is not None else None,
            "mtu": n.mtu,
            "usages": sorted(enum(u) or "" for u in n.usages or ()),
            "description": n.description or "",
        },
        parent=ref(n.data_center) or "",
    )


def nic_profile(p: Any) -> Item:
    mode = enum(p.pass_through.mode) if p.pass_through is not None else None
    return Item(
        "nicprofile",
        str(p.id),
        _name(p),
        {"network": ref(p.network), "pass_through": mode == "enabled"},
        parent=ref(p.network) or "",
    )


def storage_domain(sd: Any) -> Item:
    dcs = [ref(dc) for dc in sd.data_centers or ()]
    status = enum(sd.status) or enum(sd.external_status) or ""
    return Item(
        "storagedomain",
        str(sd.id),
        _name(sd),
        {
            "type": enum(sd.type),
            "storage_type": enum(sd.storage.type) if sd.storage is not None else None,
            "available": sd.available,
            "used": sd.used,
            "data_centers": [d for d in dcs if d],
            "status": status or None,
        },
        status=status,
        parent=(dcs[0] if dcs else None) or "",
    )


def disk_profile(p: Any) -> Item:
    return Item(
        "diskprofile",
        str(p.id),
        _name(p),
        {"storage_domain": ref(p.storage_domain)},
        parent=ref(p.storage_domain) or "",
    )


def disk_summary(d: Any) -> dict[str, Any]:
    """What a VM embeds of each of its disks (and the disk item's own fields). ``backup``
    is here, not only on the disk item, because the planner decides from the VM alone
    whether each disk can go warm (incremental backup)."""
    domains = [ref(sd) for sd in d.storage_domains or ()]
    return {
        "name": str(d.alias or d.name or d.id),
        "provisioned_size": d.provisioned_size,
        "actual_size": d.actual_size,
        "format": enum(d.format),
        "sparse": d.sparse,
        "status": enum(d.status),
        "storage_type": enum(d.storage_type),
        "shareable": bool(d.shareable),
        "storage_domain": domains[0] if domains else None,
        "backup": enum(d.backup),
    }


def disk(d: Any, summary: dict[str, Any] | None = None) -> Item:
    """A disk item; ``summary`` is its ``disk_summary`` when the caller already made it."""
    summary = summary if summary is not None else disk_summary(d)
    data = {
        **summary,
        "disk_profile": ref(d.disk_profile),
        "content_type": enum(d.content_type),
    }
    return Item(
        "disk",
        str(d.id),
        summary["name"],
        data,
        status=summary["status"] or "",
        parent=summary["storage_domain"] or "",
    )


def _firmware(bios_type: str | None) -> str:
    return "uefi" if bios_type in ("q35_ovmf", "q35_secure_boot") else "bios"


def _machine(v: Any, bios_type: str | None) -> str | None:
    if v.custom_emulated_machine:
        return str(v.custom_emulated_machine)
    if bios_type and bios_type.startswith("q35"):
        return "q35"
    if bios_type and bios_type.startswith("i440fx"):
        return "i440fx"
    return None


def _nic(n: Any, lookups: Lookups) -> dict[str, Any]:
    profile_id = ref(n.vnic_profile)
    profile = lookups.profiles.get(profile_id) if profile_id else None
    interface = enum(n.interface)
    return {
        "id": str(n.id),
        "name": n.name,
        "mac": n.mac.address if n.mac is not None else None,
        "interface": interface,
        "vnic_profile": profile_id,
        "network": profile.network if profile else ref(n.network),
        "pass_through": interface == "pci_passthrough" or bool(profile and profile.pass_through),
        "plugged": n.plugged,
        "linked": n.linked,
    }


def _attachment(a: Any, lookups: Lookups) -> dict[str, Any]:
    disk_id = ref(a.disk) or str(a.id)
    entry: dict[str, Any] = {
        "id": disk_id,
        "interface": enum(a.interface),
        "bootable": bool(a.bootable),
        "active": a.active is not False,
        "logical_name": a.logical_name,
    }
    if a.disk is not None and a.disk.provisioned_size is not None:  # embedded (follow=.disk)
        entry.update(disk_summary(a.disk))
    elif disk_id in lookups.disks:
        entry.update(lookups.disks[disk_id])
    else:
        entry["name"] = None  # listed without its disk: concerns report it as unknown
    return entry


def vm_disks(v: Any) -> list[Item]:
    """The disks a VM read with ``follow=disk_attachments.disk`` embeds, as disk items."""
    return [disk(a.disk) for a in v.disk_attachments or () if a.disk is not None and a.disk.id]


def vm(v: Any, lookups: Lookups) -> Item:
    bios_type = enum(v.bios.type) if v.bios is not None else None
    cluster_id = ref(v.cluster)
    if bios_type in (None, "cluster_default") and cluster_id:
        bios_type = lookups.cluster_bios.get(cluster_id) or bios_type
    topology = v.cpu.topology if v.cpu is not None else None
    tpm = getattr(v, "tpm_enabled", None)
    status = enum(v.status) or ""
    data: dict[str, Any] = {
        "status": status,
        "cluster": cluster_id,
        "host": ref(v.host),
        "cpu": {
            "sockets": topology.sockets if topology else None,
            "cores": topology.cores if topology else None,
            "threads": topology.threads if topology else None,
        },
        "memory": v.memory,
        "firmware": _firmware(bios_type),
        "bios_type": bios_type,
        "secure_boot": bios_type == "q35_secure_boot" if bios_type else None,
        "machine_type": _machine(v, bios_type),
        "os_type": v.os.type if v.os is not None else None,
        "type": enum(v.type),
        "description": v.description or "",
        "high_availability": bool(v.high_availability and v.high_availability.enabled),
        "memory_ballooning": bool(v.memory_policy and v.memory_policy.ballooning),
        "tpm": tpm,
        "has_illegal_images": v.has_illegal_images,
        "nics": [_nic(n, lookups) for n in v.nics or ()],
        "disks": [_attachment(a, lookups) for a in v.disk_attachments or ()],
    }
    return Item("vm", str(v.id), _name(v), data, status=status, parent=cluster_id or "")
