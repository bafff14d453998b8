"""What a simulated cloud holds, read from YAML, and the disk contents it is built from.

A scenario names flavors, networks, volume types and servers; each server boots from an image
(its root disk is a local "ephemeral" file, reached through ``createImage``) or from a volume
(reached through Cinder's ``os-volume_upload_image``), and may have data volumes attached.

Disk sizes are in MiB, not GiB: tests and benchmarks copy every byte, so the simulator keeps
disks small and reports Cinder's ``size`` rounded up to whole GiB, as the API requires. Each
disk is a sparse file: ``data_mib`` MiB of seeded pseudo-random data spread over it, the
rest holes, so copies can be checked byte for byte and sparseness can be measured.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

MiB = 1 << 20


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


class Disk(_Model):
    """A disk's size and how much of it holds data."""

    size_mib: int = 64
    data_mib: int = 8
    seed: int | None = None  # default: derived from the owner's name


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


class Scenario(_Model):
    project: str = "demo"
    user: str = "demo"
    password: str = "demo-password"  # noqa: S105 - a simulator's fixed test credential
    flavors: list[Flavor] = Field(default_factory=lambda: [Flavor(name="m1.small")])
    networks: list[Network] = Field(default_factory=lambda: [Network(name="private")])
    volume_types: list[str] = Field(default_factory=lambda: ["standard"])
    servers: list[Server] = Field(default_factory=list)
    volume_quota: int | None = None  # Cinder answers 413 once this many volumes exist


def load(path: Path) -> Scenario:
    return Scenario.model_validate(yaml.safe_load(path.read_text()) or {})


def seed_of(name: str) -> int:
    """A stable seed from a name (``hash()`` is salted per process)."""
    return int.from_bytes(name.encode()[:8].ljust(8, b"\0"), "little") ^ len(name)


def write_disk(path: Path, disk: Disk, default_seed: int) -> None:
    """A sparse file: data in whole MiB blocks at seeded positions (block 0 always, as a boot
    sector would be), one block half zeros (zero detection must work below a buffer's size),
    the rest holes."""
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
