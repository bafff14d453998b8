"""Raw Nova / Cinder / Glance / Neutron / Keystone JSON -> normalized inventory ``Item``s.

A VM carries everything the planner, the orchestrator and its concerns need, resolved at
collection time from the other listings (volumes, ports, images), so nothing downstream has
to join: flavor sizes, image or boot volume, each attached volume's status, type, size and
flags, each port's network, MAC, IPs and VIF model. Keys are camelCase like the rest of
Hoist's API; values keep OpenStack's words (``ACTIVE``, ``in-use``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.inventory.items import Item

# Nova's power_state numbers (nova/compute/power_state.py).
POWER_STATES = {
    0: "nostate", 1: "running", 3: "paused", 4: "shutdown", 6: "crashed", 7: "suspended",
}  # fmt: skip
ROOT_DEVICES = ("/dev/vda", "/dev/sda", "/dev/hda", "/dev/xvda")
# Image properties a migration cares about (guest OS, firmware, buses, NIC model).
IMAGE_PROPERTY_PREFIXES = ("hw_", "os_", "architecture", "img_")
# Glance's own attributes that share the ``os_`` prefix: they say nothing of the guest (and
# the hash would make every VM of an image differ by its bytes).
GLANCE_OWN = frozenset({"os_hash_algo", "os_hash_value", "os_hidden"})


def _by_id(rows: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(r["id"]): r for r in rows if r.get("id")}


@dataclass
class Indexes:
    """The listings a VM is resolved against."""

    volumes: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    ports_by_device: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)
    networks: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    images: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    flavors: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    attached: dict[str, list[str]] = field(default_factory=dict)  # server -> Cinder's volumes

    @classmethod
    def build(
        cls,
        volumes: Iterable[Mapping[str, Any]],
        ports: Iterable[Mapping[str, Any]],
        networks: Iterable[Mapping[str, Any]],
        images: Iterable[Mapping[str, Any]],
        flavors: Iterable[Mapping[str, Any]],
    ) -> Indexes:
        by_device: dict[str, list[Mapping[str, Any]]] = {}
        for p in ports:
            if p.get("device_id"):
                by_device.setdefault(str(p["device_id"]), []).append(p)
        vols = _by_id(volumes)
        attached: dict[str, list[str]] = {}
        for vid, v in vols.items():
            for a in v.get("attachments") or []:
                if a.get("server_id"):
                    attached.setdefault(str(a["server_id"]), []).append(vid)
        return cls(vols, by_device, _by_id(networks), _by_id(images), _by_id(flavors), attached)


def project(raw: Mapping[str, Any]) -> Item:
    return Item(
        "project",
        raw["id"],
        raw.get("name") or raw["id"],
        {
            "domainId": raw.get("domain_id"),
            "enabled": raw.get("enabled", True),
            "description": raw.get("description") or "",
        },
        parent="",
    )


def flavor(raw: Mapping[str, Any]) -> Item:
    return Item(
        "flavor",
        raw["id"],
        raw.get("name") or raw["id"],
        {
            "vcpus": raw.get("vcpus"),
            "ramMiB": raw.get("ram"),
            "diskGiB": raw.get("disk"),
            "ephemeralGiB": raw.get("OS-FLV-EXT-DATA:ephemeral", 0),
            "swapMiB": raw.get("swap") or 0,
            "isPublic": raw.get("os-flavor-access:is_public", True),
            "extraSpecs": raw.get("extra_specs") or {},
        },
    )


def image_properties(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in raw.items()
        if isinstance(k, str)
        and k.startswith(IMAGE_PROPERTY_PREFIXES)
        and k not in GLANCE_OWN
        and not k.startswith("os_glance_")  # Glance's reserved namespace
    }


def image(raw: Mapping[str, Any]) -> Item:
    return Item(
        "image",
        raw["id"],
        raw.get("name") or raw["id"],
        {
            "diskFormat": raw.get("disk_format"),
            "containerFormat": raw.get("container_format"),
            "size": raw.get("size"),
            "virtualSize": raw.get("virtual_size"),
            "visibility": raw.get("visibility"),
            "minDiskGiB": raw.get("min_disk", 0),
            "minRamMiB": raw.get("min_ram", 0),
            "hashAlgo": raw.get("os_hash_algo"),
            "hashValue": raw.get("os_hash_value"),
            "checksum": raw.get("checksum"),
            "imageType": raw.get("image_type"),
            "instanceUuid": raw.get("instance_uuid"),
            "properties": image_properties(raw),
            "createdAt": raw.get("created_at"),
            "updatedAt": raw.get("updated_at"),
        },
        status=raw.get("status") or "",
        parent=raw.get("owner") or "",
    )


def volume_type(raw: Mapping[str, Any]) -> Item:
    return Item(
        "volumetype",
        raw["id"],
        raw.get("name") or raw["id"],
        {
            "isPublic": raw.get("is_public", True),
            "description": raw.get("description") or "",
            "extraSpecs": raw.get("extra_specs") or {},
        },
    )


def _volume_project(raw: Mapping[str, Any]) -> str:
    return str(raw.get("os-vol-tenant-attr:tenant_id") or raw.get("project_id") or "")


def volume(raw: Mapping[str, Any]) -> Item:
    return Item(
        "volume",
        raw["id"],
        raw.get("name") or raw["id"],
        {
            "sizeGiB": raw.get("size"),
            "volumeType": raw.get("volume_type"),
            "bootable": str(raw.get("bootable", "false")).lower() == "true",
            "multiattach": bool(raw.get("multiattach")),
            "encrypted": bool(raw.get("encrypted")),
            "availabilityZone": raw.get("availability_zone"),
            "attachments": [
                {"serverId": a.get("server_id"), "device": a.get("device")}
                for a in raw.get("attachments") or []
            ],
            "snapshotId": raw.get("snapshot_id"),
            "sourceVolumeId": raw.get("source_volid"),
            "imageMetadata": raw.get("volume_image_metadata") or {},
            "metadata": raw.get("metadata") or {},
            "updatedAt": raw.get("updated_at"),
        },
        status=raw.get("status") or "",
        parent=_volume_project(raw),
    )


def snapshot(raw: Mapping[str, Any]) -> Item:
    return Item(
        "snapshot",
        raw["id"],
        raw.get("name") or raw["id"],
        {
            "volumeId": raw.get("volume_id"),
            "sizeGiB": raw.get("size"),
            "createdAt": raw.get("created_at"),
            "metadata": raw.get("metadata") or {},
        },
        status=raw.get("status") or "",
        parent=str(raw.get("os-extended-snapshot-attributes:project_id") or ""),
    )


def network(raw: Mapping[str, Any]) -> Item:
    return Item(
        "network",
        raw["id"],
        raw.get("name") or raw["id"],
        {
            "shared": bool(raw.get("shared")),
            "external": bool(raw.get("router:external")),
            "mtu": raw.get("mtu"),
            "networkType": raw.get("provider:network_type"),
            "segmentationId": raw.get("provider:segmentation_id"),
            "subnets": sorted(raw.get("subnets") or []),
            "adminStateUp": raw.get("admin_state_up", True),
        },
        status=raw.get("status") or "",
        parent=str(raw.get("project_id") or raw.get("tenant_id") or ""),
    )


def subnet(raw: Mapping[str, Any]) -> Item:
    return Item(
        "subnet",
        raw["id"],
        raw.get("name") or raw["id"],
        {
            "networkId": raw.get("network_id"),
            "cidr": raw.get("cidr"),
            "ipVersion": raw.get("ip_version"),
            "gatewayIp": raw.get("gateway_ip"),
            "enableDhcp": raw.get("enable_dhcp"),
            "dnsNameservers": raw.get("dns_nameservers") or [],
        },
        parent=str(raw.get("project_id") or raw.get("tenant_id") or ""),
    )


def _flavor_of(raw: Mapping[str, Any], idx: Indexes) -> dict[str, Any]:
    """Embedded (microversion 2.47+) or looked up by id (older clouds)."""
    f = raw.get("flavor") or {}
    if "vcpus" not in f and f.get("id") in idx.flavors:
        full = idx.flavors[f["id"]]
        f = {**full, "original_name": full.get("name"), "ephemeral": full.get(
            "OS-FLV-EXT-DATA:ephemeral", 0)}  # fmt: skip
    return {
        "id": f.get("id"),
        "name": f.get("original_name") or f.get("name"),
        "vcpus": f.get("vcpus"),
        "ramMiB": f.get("ram"),
        "diskGiB": f.get("disk"),
        "ephemeralGiB": f.get("ephemeral", 0) or 0,
        "swapMiB": f.get("swap") or 0,
        "extraSpecs": f.get("extra_specs") or {},
    }


def attached_volume_ids(raw: Mapping[str, Any], idx: Indexes) -> list[str]:
    """Nova's list, plus volumes Cinder says are attached to the server."""
    ids = [str(v["id"]) for v in raw.get("os-extended-volumes:volumes_attached") or []]
    ids.extend(v for v in idx.attached.get(str(raw["id"]), []) if v not in ids)
    return ids


def _volumes_of(raw: Mapping[str, Any], idx: Indexes, from_volume: bool) -> list[dict[str, Any]]:
    sid = raw["id"]
    root_device = raw.get("OS-EXT-SRV-ATTR:root_device_name")
    out: list[dict[str, Any]] = []
    for vid in attached_volume_ids(raw, idx):
        v = idx.volumes.get(vid)
        if v is None:  # attached but not visible in Cinder (another project, or gone)
            out.append({"id": vid, "name": "", "device": None, "bootIndex": None,
                        "sizeGiB": None, "status": "", "volumeType": None,
                        "bootable": False, "multiattach": False, "encrypted": False})  # fmt: skip
            continue
        device = next(
            (a.get("device") for a in v.get("attachments") or [] if a.get("server_id") == sid),
            None,
        )
        out.append(
            {
                "id": vid,
                "name": v.get("name") or "",
                "device": device,
                "bootIndex": None,
                "sizeGiB": v.get("size"),
                "status": v.get("status") or "",
                "volumeType": v.get("volume_type"),
                "bootable": str(v.get("bootable", "false")).lower() == "true",
                "multiattach": bool(v.get("multiattach")),
                "encrypted": bool(v.get("encrypted")),
            }
        )
    out.sort(key=lambda d: (d["device"] is None, d["device"] or "", d["id"]))
    if from_volume:
        roots = (root_device,) if root_device else ROOT_DEVICES
        boot = next((d for d in out if d["device"] in roots), None)
        if boot is not None:
            boot["bootIndex"] = 0
    return out


def _nics_of(raw: Mapping[str, Any], idx: Indexes, vif_model: str | None) -> list[dict[str, Any]]:
    ports = idx.ports_by_device.get(raw["id"])
    if ports:
        nics = [
            {
                "portId": p["id"],
                "networkId": p.get("network_id"),
                "networkName": (idx.networks.get(str(p.get("network_id"))) or {}).get("name"),
                "mac": p.get("mac_address"),
                "ips": [ip.get("ip_address") for ip in p.get("fixed_ips") or []],
                "subnetIds": [ip.get("subnet_id") for ip in p.get("fixed_ips") or []],
                "vnicType": p.get("binding:vnic_type") or "normal",
                "vifModel": vif_model,
                "status": p.get("status"),
            }
            for p in ports
        ]
        return sorted(nics, key=lambda n: (n["mac"] or "", n["portId"]))
    # No port visible (another project's network): what Nova's addresses tell.
    by_mac: dict[str, dict[str, Any]] = {}
    net_ids = {n.get("name"): i for i, n in idx.networks.items()}
    for net_name, addrs in sorted((raw.get("addresses") or {}).items()):
        for a in addrs:
            mac = a.get("OS-EXT-IPS-MAC:mac_addr") or ""
            nic = by_mac.setdefault(
                mac,
                {"portId": None, "networkId": net_ids.get(net_name), "networkName": net_name,
                 "mac": mac or None, "ips": [], "subnetIds": [], "vnicType": None,
                 "vifModel": vif_model, "status": None},
            )  # fmt: skip
            if a.get("OS-EXT-IPS:type", "fixed") == "fixed":
                nic["ips"].append(a.get("addr"))
    return list(by_mac.values())


def _security_groups(raw: Mapping[str, Any]) -> list[str]:
    """Nova's names of the groups on the server's ports, each once, in Nova's order (Nova
    leaves the key out for a server without any)."""
    names: list[str] = []
    for g in raw.get("security_groups") or []:
        name = g.get("name") if isinstance(g, Mapping) else None
        if name and name not in names:
            names.append(str(name))
    return names


def vm(raw: Mapping[str, Any], idx: Indexes) -> Item:
    image_ref = raw.get("image")
    image_id = image_ref.get("id") if isinstance(image_ref, Mapping) else None
    from_volume = not image_id
    volumes = _volumes_of(raw, idx, from_volume)
    if from_volume:
        boot = next((d for d in volumes if d["bootIndex"] == 0), None)
        boot_raw = idx.volumes.get(boot["id"]) if boot else None
        props = image_properties((boot_raw or {}).get("volume_image_metadata") or {})
    else:
        props = image_properties(idx.images.get(str(image_id)) or {})
    power = raw.get("OS-EXT-STS:power_state")
    return Item(
        "vm",
        raw["id"],
        raw.get("name") or raw["id"],
        {
            "status": raw.get("status"),
            "vmState": raw.get("OS-EXT-STS:vm_state"),
            "taskState": raw.get("OS-EXT-STS:task_state"),
            "powerState": POWER_STATES.get(power, str(power)) if power is not None else None,
            "flavor": _flavor_of(raw, idx),
            "boot": "volume" if from_volume else "image",
            "imageId": image_id,
            "imageProperties": props,
            "volumes": volumes,
            "nics": _nics_of(raw, idx, props.get("hw_vif_model")),
            "projectId": raw.get("tenant_id"),
            "availabilityZone": raw.get("OS-EXT-AZ:availability_zone"),
            "metadata": raw.get("metadata") or {},
            "keyName": raw.get("key_name"),
            "securityGroups": _security_groups(raw),
            "locked": raw.get("locked"),
            "createdAt": raw.get("created"),
            "updatedAt": raw.get("updated"),
        },
        status=str(raw.get("status") or ""),
        parent=str(raw.get("tenant_id") or ""),
    )
