"""Scenarios: the inventory and faults one simulated engine starts with.

From YAML (tests, demo) or generated (``generate``: thousands of VMs for scale tests).
A scenario file looks like::

    users: {admin@internal: secret}
    networks: [{name: prod, vlan: 100}]
    vms:
      - name: web-1
        status: up                 # up | down
        memory: 4GiB
        cpu: {sockets: 1, cores: 2, threads: 1}
        firmware: uefi             # bios | uefi | uefi-secure-boot
        ballooning: false          # also high_availability, description
        acpi: true                 # false: the guest ignores shutdown, only stop powers off
        guest_writes: 256KiB       # bytes/s the running guest writes into each disk whose
                                   # backup is incremental (default 0: none)
        snapshots: [{description: before-upgrade, status: ok}]   # ok | locked | in_preview
        os: rhel_8x64
        nics: [{network: prod, model: virtio}]   # network: "" is no network (<empty>)
        disks:
          - {name: web-1-root, size: 64MiB, allocated: 0.25, format: cow,
             layout: scattered, extent: 1MiB, interface: virtio_scsi, bootable: true,
             backup: incremental}     # incremental (needs format cow) | none (default)
          - {name: quorum, size: 16MiB, shareable: true}
          - {name: web-1-os, image: ~/images/rhel.qcow2, format: cow}   # a user's image
      - name: web-2
        disks: [{attach: quorum, interface: virtio_scsi, bootable: false}]  # the same disk
    faults:
      - {kind: disk_locked, disk: web-1-root, seconds: 2}

Fault kinds (``Fault``): ``disk_locked`` (``seconds``), ``paused_system``, ``ticket_expiry``
(``after_bytes``), ``bandwidth`` (``bytes_per_second``), ``connection_reset`` (``after_bytes``,
``count``), ``control_reset`` (``count``: the first ``count`` OPTIONS requests and the first
``count`` extents requests each have their connection reset, alternately before any answer
and in the middle of it), ``http_5xx`` (``count``, ``status``), ``host_unreachable``
(transfer_url points at a closed port, so clients must use proxy_url), ``corrupt_data``
(``after_bytes``: the proxy flips one byte of the image data it serves past that many
bytes, as a faulty middlebox that terminates TLS would; imageio's checksum, computed by the
daemon from the image itself, does not see it), ``no_checksum`` (the proxy answers 404 to
the checksum API, as an imageio older than 2.0 does), ``maintenance``
(``seconds``: from the moment it is armed the engine is down for maintenance, and Apache
answers every API and SSO request with its 503 page; see ``sim/ovirt/maintenance.py``).
``disk`` names the
disk (name or id); without it the fault applies to every disk.

A disk with ``image: PATH`` holds the bytes of that raw or qcow2 file (``qemu-img info``
says which, not the name) instead of a generated pattern, stored in the disk's ``format``
(the file is converted when the disk is first read, and never changed). ``size`` defaults
to the image's virtual size and may be larger (a disk grown after the image was made), not
smaller; ``allocated``, ``layout`` and ``extent`` describe a pattern, so they are an error
next to ``image``. A relative path is relative to the scenario file (``load``) or to
``from_dict``'s ``base``; ``~`` is expanded. The engine reports the image's allocated bytes
as the disk's actual size.

Backup faults (``sim/ovirt/backups.py``) act on the next ``count`` backups that include a
matching disk: ``backup_refused`` (``status``: the POST is answered with that error),
``backup_failed`` (the backup goes ``failed`` after ``starting``), ``checkpoint_invalid``
and ``checkpoint_missing`` (once the backup succeeded, the checkpoint it made turns
``invalid``, or is gone with its bitmaps as if removed out of band), ``engine_restart``
(``seconds``: once the backup is ``ready`` the engine's API is unreachable that long, and
the backups in flight end ``failed``).
"""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from sim import diskimage
from sim.ovirt import entities as m
from sim.ovirt.images import ImageSpec

FAULT_KINDS = (
    "disk_locked",
    "paused_system",
    "ticket_expiry",
    "bandwidth",
    "connection_reset",
    "control_reset",
    "http_5xx",
    "host_unreachable",
    "corrupt_data",
    "no_checksum",
    "backup_refused",
    "backup_failed",
    "checkpoint_invalid",
    "checkpoint_missing",
    "engine_restart",
    "maintenance",
)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20}
_UNITS |= {"g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40}
_BIOS = {"bios": "q35_sea_bios", "uefi": "q35_ovmf", "uefi-secure-boot": "q35_secure_boot"}
#: The keys that shape a generated disk's pattern: meaningless for a disk from an image.
PATTERN_KEYS = ("allocated", "layout", "extent")


@dataclass
class Fault:
    kind: str
    disk: str | None = None
    seconds: float = 0.0
    after_bytes: int = 0
    bytes_per_second: int = 0
    count: int = 1
    status: int = 503

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind {self.kind!r}: expected one of {', '.join(FAULT_KINDS)}")

    def applies(self, disk: m.Disk) -> bool:
        return self.disk is None or self.disk in (disk.id, disk.name)


def size(value: int | str) -> int:
    """``4GiB``, ``512MiB``, ``1048576`` -> bytes."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"size {value!r}: expected a number with B, KiB, MiB, GiB or TiB")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _mac(rng: random.Random) -> str:
    return "56:6f:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(4))


class Builder:
    """Adds objects to an inventory with a default topology (one DC, cluster, two hosts,
    ``ovirtmgmt``, one NFS data domain) and deterministic ids from ``seed``; a disk's
    relative ``image`` path is relative to ``base``."""

    def __init__(self, seed: int = 0, base: Path | None = None) -> None:
        self.rng = random.Random(seed)
        self.base = base
        self.inv = m.Inventory()
        dc = m.DataCenter(_id(self.rng), "Default")
        self.inv.data_centers[dc.id] = dc
        self.cluster = m.Cluster(_id(self.rng), "Default", dc.id)
        self.inv.clusters[self.cluster.id] = self.cluster
        for i in (1, 2):
            host = m.Host(_id(self.rng), f"host{i}", self.cluster.id)
            self.inv.hosts[host.id] = host
        sd = m.StorageDomain(_id(self.rng), "data", dc.id)
        self.inv.storage_domains[sd.id] = sd
        self.domain = sd
        self.profile = m.DiskProfile(_id(self.rng), "data", sd.id)
        self.inv.disk_profiles[self.profile.id] = self.profile
        self.vnic_by_network: dict[str, str] = {}
        self.network("ovirtmgmt")

    def network(self, name: str, vlan: int | None = None) -> str:
        dc_id = next(iter(self.inv.data_centers))
        net = m.Network(_id(self.rng), name, dc_id, vlan)
        self.inv.networks[net.id] = net
        profile = m.VnicProfile(_id(self.rng), name, net.id)
        self.inv.vnic_profiles[profile.id] = profile
        self.vnic_by_network[name] = profile.id
        return profile.id

    def disk(self, spec: dict[str, Any], default_name: str, where: str = "disk") -> m.Disk:
        """``where``: the disk's key path in the scenario (``vms[0].disks[1]``), for errors."""
        fmt = {"cow": "qcow2", "qcow2": "qcow2", "raw": "raw"}[str(spec.get("format", "raw"))]
        backup = str(spec.get("backup", "none"))
        if backup not in ("none", "incremental"):
            raise ValueError(f"disk backup {backup!r}: expected none or incremental")
        if backup == "incremental" and fmt != "qcow2":
            raise ValueError("a disk with incremental backup needs format cow (qcow2)")
        seed = self.rng.randrange(1 << 30)
        if spec.get("image") is not None:
            source, virtual = image_source(spec, where, self.base)
            image = ImageSpec(virtual, data_share=0.0, fmt=fmt, seed=seed, source=source)
        else:
            image = ImageSpec(
                virtual_size=size(spec.get("size", "64MiB")),
                data_share=float(spec.get("allocated", 0.25)),
                fmt=fmt,
                layout=str(spec.get("layout", "large")),
                extent=size(spec.get("extent", "8MiB")),
                seed=seed,
            )
        disk = m.Disk(
            id=str(spec.get("id") or _id(self.rng)),
            name=str(spec.get("name", default_name)),
            storage_domain_id=self.domain.id,
            disk_profile_id=self.profile.id,
            image=image,
            status=str(spec.get("status", "ok")),
            storage_type=str(spec.get("storage_type", "image")),
            sparse=bool(spec.get("sparse", True)),
            shareable=bool(spec.get("shareable", False)),
            backup=backup,
        )
        self.inv.disks[disk.id] = disk
        return disk

    def shared_disk(self, vm: str, ref: str) -> m.Disk:
        """An earlier VM's disk (``attach``: its name or id), attached to one more VM. The
        engine attaches a disk to a second VM only if it is shareable, and so does this."""
        disk = next((d for d in self.inv.disks.values() if ref in (d.name, d.id)), None)
        if disk is None:
            raise ValueError(f"VM {vm}: attach {ref!r}: no such disk defined before it")
        if not disk.shareable:
            raise ValueError(f"VM {vm}: attach {ref!r}: the disk is not shareable")
        return disk

    def vm(self, spec: dict[str, Any], where: str = "vm") -> m.Vm:
        name = str(spec["name"])
        status = str(spec.get("status", "up"))
        hosts = list(self.inv.hosts)
        cpu = spec.get("cpu", {})
        firmware = str(spec.get("firmware", "bios"))
        if firmware not in _BIOS:
            raise ValueError(
                f"VM {name}: firmware {firmware!r}: expected one of {', '.join(_BIOS)}"
            )
        vm = m.Vm(
            id=str(spec.get("id") or _id(self.rng)),
            name=name,
            cluster_id=self.cluster.id,
            host_id=self.rng.choice(hosts) if status == "up" else None,
            status=status,
            memory=size(spec.get("memory", "4GiB")),
            sockets=int(cpu.get("sockets", 1)),
            cores=int(cpu.get("cores", 2)),
            threads=int(cpu.get("threads", 1)),
            bios_type=_BIOS[firmware],
            os_type=str(spec.get("os", "rhel_8x64")),
            ballooning=bool(spec.get("ballooning", False)),
            high_availability=bool(spec.get("high_availability", False)),
            description=str(spec.get("description", "")),
            acpi=bool(spec.get("acpi", True)),
            guest_write_rate=size(spec.get("guest_writes", 0)),
        )
        for snap in spec.get("snapshots", []):
            vm.snapshots.append(
                m.Snapshot(
                    _id(self.rng),
                    str(snap.get("description", "snapshot")),
                    status=str(snap.get("status", "ok")),
                )
            )
        for i, nic in enumerate(spec.get("nics", [{"network": "ovirtmgmt"}])):
            network = str(nic.get("network", "ovirtmgmt"))
            profile = (
                (self.vnic_by_network.get(network) or self.network(network)) if network else None
            )
            vm.nics.append(
                m.Nic(
                    _id(self.rng),
                    f"nic{i + 1}",
                    str(nic.get("mac") or _mac(self.rng)),
                    profile,
                    str(nic.get("model", "virtio")),
                )
            )
        for i, disk_spec in enumerate(spec.get("disks", [])):
            disk = (
                self.shared_disk(name, str(disk_spec["attach"]))
                if "attach" in disk_spec
                else self.disk(disk_spec, f"{name}-disk{i}", f"{where}.disks[{i}]")
            )
            vm.disk_attachments.append(
                m.DiskAttachment(
                    disk.id,
                    str(disk_spec.get("interface", "virtio_scsi")),
                    bool(disk_spec.get("bootable", i == 0)),
                )
            )
        self.inv.vms[vm.id] = vm
        return vm


def image_source(
    spec: dict[str, Any], where: str, base: Path | None
) -> tuple[diskimage.SourceImage, int]:
    """The image a disk ``spec`` names (``image``) and the disk's size; ``ValueError``
    naming ``where`` (the disk's key path) and the file if either cannot be."""
    given = [key for key in PATTERN_KEYS if key in spec]
    if given:
        raise ValueError(
            f"{where}: {', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to "
            "a disk made from an image (its data is the image's): remove "
            + ("it" if len(given) == 1 else "them")
        )
    path = diskimage.resolve(str(spec["image"]), base)
    source = diskimage.probe(f"{where}.image", path)
    wanted = size(spec["size"]) if "size" in spec else None
    return source, diskimage.fit(where, source, wanted)


def from_dict(
    doc: dict[str, Any], seed: int = 0, base: Path | None = None
) -> tuple[m.Inventory, list[Fault]]:
    """An inventory and its faults from a parsed scenario document; ``base`` is where
    relative ``image`` paths are (default: the working directory)."""
    b = Builder(seed, base)
    if "users" in doc:
        b.inv.users = {str(k): str(v) for k, v in doc["users"].items()}
    for net in doc.get("networks", []):
        b.network(str(net["name"]), net.get("vlan"))
    for i, vm in enumerate(doc.get("vms", [])):
        b.vm(vm, f"vms[{i}]")
    for i, disk in enumerate(doc.get("disks", [])):  # floating disks, attached to no VM
        b.disk(disk, f"disk-{len(b.inv.disks)}", f"disks[{i}]")
    known = {f.name for f in fields(Fault)}
    faults = []
    for raw in doc.get("faults", []):
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"fault {raw}: unknown keys {sorted(unknown)}")
        values = dict(raw)
        for key in ("after_bytes", "bytes_per_second"):
            if key in values:
                values[key] = size(values[key])
        faults.append(Fault(**values))
    for vm in b.inv.vms.values():
        b.inv.add_event(30, f"VM {vm.name} was created", vm_id=vm.id)
    return b.inv, faults


def load(path: Path) -> tuple[m.Inventory, list[Fault]]:
    return from_dict(yaml.safe_load(path.read_text()) or {}, base=path.parent)


def generate(vms: int, seed: int = 0) -> m.Inventory:
    """A big inventory: ``vms`` VMs over a few networks, 1-3 disks each (images are made
    only when a disk is transferred, so 10,000 VMs cost memory, not disk space)."""
    b = Builder(seed)
    rng = random.Random(seed + 1)
    for i in range(8):
        b.network(f"net-{i}", 100 + i)
    networks = ["ovirtmgmt", *(f"net-{i}" for i in range(8))]
    for i in range(vms):
        vm = b.vm(
            {
                "name": f"vm-{i:05d}",
                "status": rng.choice(("up", "up", "up", "down")),
                "memory": rng.choice((1, 2, 4, 8, 16)) << 30,
                "cpu": {"sockets": 1, "cores": rng.choice((1, 2, 4, 8))},
                "firmware": rng.choice(("bios", "uefi")),
                "os": rng.choice(("rhel_8x64", "rhel_9x64", "windows_2019x64", "other_linux")),
                "nics": [{"network": rng.choice(networks)} for _ in range(rng.choice((1, 1, 2)))],
                "disks": [
                    {
                        "size": rng.choice((1, 10, 20, 50, 100)) << 30,
                        "allocated": round(rng.uniform(0.05, 0.8), 2),
                        "format": rng.choice(("raw", "cow")),
                    }
                    for _ in range(rng.choice((1, 1, 2, 3)))
                ],
            }
        )
        b.inv.add_event(30, f"VM {vm.name} was created", vm_id=vm.id)
    return b.inv
