"""What a simulated cloud holds, read from YAML, and the disk contents it is built from.

A scenario names flavors, networks, volume types and servers; each server boots from an image
(its root disk is a local "ephemeral" file, reached through ``createImage``) or from a volume
(reached through Cinder's ``os-volume_upload_image``), and may have data volumes attached.

Disk sizes are in MiB, not GiB: tests and benchmarks copy every byte, so the simulator keeps
disks small and reports Cinder's ``size`` rounded up to whole GiB, as the API requires. Each
disk is a sparse file: ``data_mib`` MiB of seeded pseudo-random data spread over it, the
rest holes, so copies can be checked byte for byte and sparseness can be measured.

Or a disk holds a user's image: ``root`` and ``volumes[]`` take ``image: PATH``, a raw or
qcow2 file (``qemu-img info`` says which; ``sim/diskimage.py``). The simulator stores every
disk raw (an ephemeral root file, a Cinder volume's file, and so the Glance images made of
them: ``disk_format`` raw), so the image is converted to raw, holes kept, the user's file
left as it is. ``size_mib`` defaults to the image's virtual size rounded up to a MiB (the
padding reads as zeros) and may be larger, never smaller; ``data_mib`` and ``seed`` make the
generated contents, so they are an error next to ``image``. A relative path is relative to
the scenario file (``load``), else to the working directory; ``~`` is expanded::

    servers:
      - name: web-1
        flavor: m1.small
        root: {image: images/web.qcow2}
        volumes: [{name: web-1-data, image: ~/data.raw, size_mib: 512}]
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from sim import diskimage
from sim.openstack.faults import Faults

MiB = 1 << 20
#: The keys that make a generated disk's contents: meaningless for a disk from an image.
PATTERN_KEYS = ("data_mib", "seed")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Flavor(_Model):
    name: str
    vcpus: int = 1
    ram_mib: int = 1024
    disk_gib: int = 1
    #: Nova's extra specs, e.g. ``{"hw:cpu_cores": "2"}`` (values are strings in Nova).
    extra_specs: dict[str, str] = Field(default_factory=dict)


class Network(_Model):
    name: str
    cidr: str = "10.0.0.0/24"


class SecurityGroupRule(_Model):
    """One Neutron rule; ``None`` is Neutron's "any" (protocol, ports, remote)."""

    direction: Literal["ingress", "egress"] = "ingress"
    ethertype: Literal["IPv4", "IPv6"] = "IPv4"
    protocol: str | None = None  # tcp, udp, icmp, ... or None for any
    port_range_min: int | None = None
    port_range_max: int | None = None
    remote_ip_prefix: str | None = None


class SecurityGroup(_Model):
    """A project's security group besides ``default`` (which Neutron makes itself, so a
    scenario does not list it). Neutron adds its two egress rules (IPv4, IPv6) to every
    new group, as it does; ``rules`` come on top."""

    name: str
    description: str = ""
    rules: list[SecurityGroupRule] = Field(default_factory=list)


class Disk(_Model):
    """A disk's size and how much of it holds data, or the image it holds."""

    size_mib: int = 64  # with ``image``: the image's virtual size, rounded up to a MiB
    data_mib: int = 8
    seed: int | None = None  # default: derived from the owner's name
    image: str | None = None  # a raw or qcow2 file whose bytes the disk holds
    _source: diskimage.SourceImage | None = PrivateAttr(None)

    @property
    def source(self) -> diskimage.SourceImage | None:
        """The probed image, once ``resolve_image`` ran (None: generated contents)."""
        return self._source

    def resolve_image(self, where: str, base: Path | None) -> None:
        """Check ``image`` and make it absolute (relative to ``base``), and settle
        ``size_mib``; ``ValueError`` naming ``where`` (the disk's key path) and the file.
        Once done, done: a scenario loaded from a file is not probed again by the cloud."""
        if self.image is None or self._source is not None:
            return
        given = [key for key in PATTERN_KEYS if key in self.model_fields_set]
        if given:
            raise ValueError(
                f"{where}: {', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply "
                "to a disk made from an image (its data is the image's): remove "
                + ("it" if len(given) == 1 else "them")
            )
        path = diskimage.resolve(self.image, base)
        source = diskimage.probe(f"{where}.image", path)
        if "size_mib" in self.model_fields_set:
            diskimage.fit(where, source, self.size_mib * MiB, "size_mib")
        else:
            self.size_mib = -(-source.virtual_size // MiB)
        self.image = str(path)
        self._source = source


class Volume(Disk):
    name: str | None = None
    type: str | None = None


class Server(_Model):
    name: str
    flavor: str
    boot: Literal["image", "volume"] = "image"
    root: Disk = Field(default_factory=Disk)
    volumes: list[Volume] = Field(default_factory=list)
    networks: list[str] = Field(default_factory=list)
    status: Literal["ACTIVE", "SHUTOFF"] = "ACTIVE"
    #: The boot image's properties (``hw_firmware_type: uefi``, ``os_secure_boot: required``,
    #: ``hw_disk_bus``, ``hw_cpu_cores``...). ``boot: volume``: kept as Cinder keeps them on
    #: a volume made from an image (``volume_image_metadata``). ``boot: image``: the Glance
    #: image the server boots from carries them (servers with the same properties and
    #: root ``image`` share one image, as servers of one base image do).
    image_properties: dict[str, str] = Field(default_factory=dict)
    #: The Nova keypair the server was booted with (``key_name``); Nova lists every name
    #: used in the scenario under ``/os-keypairs``.
    key_name: str | None = None
    availability_zone: str = "nova"  # Nova's and its volumes' (Cinder's) zone
    #: Groups of each of the server's ports (Neutron), which Nova names in the server.
    security_groups: list[str] = Field(default_factory=lambda: ["default"])

    def disks(self, where: str) -> list[tuple[str, Disk]]:
        """Each disk with its key path under ``where`` (the server's own)."""
        return [(f"{where}.root", self.root)] + [
            (f"{where}.volumes[{i}]", v) for i, v in enumerate(self.volumes)
        ]


class Scenario(_Model):
    project: str = "demo"
    user: str = "demo"
    password: str = "demo-password"  # noqa: S105 - a simulator's fixed test credential
    flavors: list[Flavor] = Field(default_factory=lambda: [Flavor(name="m1.small")])
    networks: list[Network] = Field(default_factory=lambda: [Network(name="private")])
    volume_types: list[str] = Field(default_factory=lambda: ["standard"])
    servers: list[Server] = Field(default_factory=list)
    volume_quota: int | None = None  # Cinder answers 413 once this many volumes exist
    security_groups: list[SecurityGroup] = Field(default_factory=list)
    #: Quota limits over the services' defaults, per service (``compute``: Nova's
    #: ``instances``, ``cores``, ``ram``...; ``volume``: Cinder's ``gigabytes``,
    #: ``snapshots``...; ``network``: Neutron's ``port``, ``network``...). Cinder's
    #: ``volumes`` is ``volume_quota``. Only ``volumes`` is enforced.
    quotas: dict[Literal["compute", "volume", "network"], dict[str, int]] = Field(
        default_factory=dict
    )
    #: Faults the cloud starts with (``sim/openstack/faults.py``), e.g. ``{fail_uploads: 1}``
    #: or ``{revoke_tokens: true}``; tests and ``POST /sim/faults`` change them later.
    faults: dict[str, Any] = Field(default_factory=dict)

    @field_validator("faults")
    @classmethod
    def _known_faults(cls, value: dict[str, Any]) -> dict[str, Any]:
        Faults().update(value)  # the same refusal as POST /sim/faults for an unknown fault
        return value


def resolve_images(s: Scenario, base: Path | None, prefix: str = "") -> None:
    """``Disk.resolve_image`` for every disk of every server (key paths after ``prefix``)."""
    for i, srv in enumerate(s.servers):
        for where, disk in srv.disks(f"{prefix}servers[{i}]"):
            disk.resolve_image(where, base)


def load(path: Path) -> Scenario:
    """A scenario file; its disks' relative ``image`` paths are relative to it."""
    scenario = Scenario.model_validate(yaml.safe_load(path.read_text()) or {})
    resolve_images(scenario, path.parent)
    return scenario


def seed_of(name: str) -> int:
    """A stable seed from a name (``hash()`` is salted per process)."""
    return int.from_bytes(name.encode()[:8].ljust(8, b"\0"), "little") ^ len(name)


def write_disk(path: Path, disk: Disk, default_seed: int) -> None:
    """A sparse file: data in whole MiB blocks at seeded positions (block 0 always, as a boot
    sector would be), one block half zeros (zero detection must work below a buffer's size),
    the rest holes. A disk with ``image``: the image's bytes, raw, grown to ``size_mib``."""
    if disk.image is not None:
        disk.resolve_image("disk", None)  # a no-op unless nobody resolved it yet
        assert disk.source is not None
        diskimage.convert(disk.source, path, "raw", disk.size_mib * MiB)
        return
    seed = disk.seed if disk.seed is not None else default_seed
    if disk.data_mib <= 0:  # big generated inventories: holes only, nothing to write
        with path.open("wb") as f:
            f.truncate(disk.size_mib * MiB)
        return
    blocks = max(1, disk.size_mib)
    rng = random.Random(seed)
    chosen = {0, *rng.sample(range(1, blocks), min(blocks - 1, max(0, disk.data_mib - 1)))}
    with path.open("wb") as f:
        f.truncate(disk.size_mib * MiB)
        for n, block in enumerate(sorted(chosen)):
            data = random.Random(seed * 1_000_003 + block).randbytes(MiB)
            if n == 1:
                data = data[: MiB // 2] + bytes(MiB // 2)
            os.pwrite(f.fileno(), data, block * MiB)
