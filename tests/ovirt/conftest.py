"""Fixtures for the oVirt simulator and populator tests.

One simulated engine (with its real imageio daemon) per module: starting one costs ~0.3 s,
and faults are per disk, so each test uses its own disk. The populator always runs as a
real process with only its normal arguments and env, as it would in its pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sim.ovirt import scenario
from sim.ovirt.engine import Engine
from sim.ovirt.entities import Disk

MiB = 1 << 20


def disk_spec(name: str, **extra: object) -> dict[str, object]:
    spec: dict[str, object] = {"name": name, "size": "24MiB", "allocated": 0.3, "extent": "2MiB"}
    spec.update(extra)
    return spec


@pytest.fixture(scope="module")
async def engine(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Engine]:
    """An engine whose floating disks are created by the tests through ``new_disk``."""
    inv, faults = scenario.from_dict(
        {
            "networks": [{"name": "prod", "vlan": 100}],
            "vms": [
                {
                    "name": "web-1",
                    "firmware": "uefi",
                    "memory": "2GiB",
                    "cpu": {"sockets": 2, "cores": 2, "threads": 1},
                    "nics": [{"network": "prod", "model": "virtio"}, {"model": "e1000"}],
                    "disks": [disk_spec("web-1-root", format="cow", bootable=True)],
                },
                {"name": "db-1", "status": "down", "disks": [disk_spec("db-1-data")]},
            ],
        }
    )
    async with Engine(inv, faults, tmp_path_factory.mktemp("engine")) as e:
        yield e


def new_disk(engine: Engine, **spec: object) -> Disk:
    """A floating disk of its own for one test (faults are per disk)."""
    name = f"disk-{uuid.uuid4().hex[:8]}"
    # A 64-bit seed: the builder derives the disk's id from it, and with 16 bits two of a
    # module's ~40 disks shared an id about once in a hundred runs (one replaced the other).
    builder = scenario.Builder(seed=uuid.uuid4().int >> 64)
    builder.domain = engine.inv.storage_domains[next(iter(engine.inv.storage_domains))]
    builder.profile = engine.inv.disk_profiles[next(iter(engine.inv.disk_profiles))]
    disk = builder.disk(disk_spec(name, **spec), name)
    engine.inv.disks[disk.id] = disk
    return disk


@dataclass
class Run:
    returncode: int
    stderr: str

    @property
    def last_line(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


def creds_env(engine: Engine, **overrides: str) -> dict[str, str]:
    env = {
        "user": "admin@internal",
        "password": "secret",
        "cacert": engine.cert.ca_pem,
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v != ""}


async def start_populator(
    engine: Engine, disk: Disk, volume: Path, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    base = {k: v for k, v in os.environ.items() if k not in ("user", "password", "cacert")}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.populators.ovirt",
        f"--volume-path={volume}",
        "--secret-name=ovirt-secret",
        "--cr-name=populator-cr",
        "--cr-namespace=default",
        "--owner-uid=uid-1234",
        "--pvc-size=1Gi",
        f"--engine-url={engine.api_url}",
        f"--disk-id={disk.id}",
        "--metrics-port=0",
        env={**base, **(env if env is not None else creds_env(engine))},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_populator(
    engine: Engine, disk: Disk, volume: Path, env: dict[str, str] | None = None
) -> Run:
    proc = await start_populator(engine, disk, volume, env)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    run = Run(proc.returncode, err.decode(errors="replace"))
    assert "failed: unexpected" not in run.stderr, run.stderr  # every failure understood
    return run


def sha256(path: Path, size: int | None = None) -> str:
    h = hashlib.sha256()
    left = size if size is not None else os.stat(path).st_size
    with path.open("rb") as f:
        while left > 0:
            block = f.read(min(left, 4 * MiB))
            if not block:
                break
            h.update(block)
            left -= len(block)
    return h.hexdigest()


async def assert_same_image(engine: Engine, disk: Disk, copy: Path) -> None:
    """Byte-exact: sha256 of the source's raw content and of the copy, and qemu-img compare."""
    src = await engine.image_path(disk.id)
    await asyncio.to_thread(_compare, src, disk, copy)


def _compare(src: Path, disk: Disk, copy: Path) -> None:
    fmt = "qcow2" if disk.image.fmt == "qcow2" else "raw"
    size = disk.provisioned_size
    if fmt == "qcow2":
        raw = src.with_suffix(".check.raw")
        subprocess.run(
            ["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(src), str(raw)], check=True
        )
        src_sha = sha256(raw)
        raw.unlink()
    else:
        src_sha = sha256(src)
    assert sha256(copy, size) == src_sha
    cmp = subprocess.run(
        [
            "qemu-img",
            "compare",
            "--image-opts",
            f"driver={fmt},file.filename={src}",
            # a block device may be larger than the disk: compare the disk's bytes only
            f"driver=raw,size={size},file.filename={copy}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr


async def transfer_phase(engine: Engine, disk: Disk, within: float = 10) -> str:
    """The final phase of the disk's latest transfer, once it has settled."""
    done = {"finished_success", "finished_cleanup", "finished_failure"}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    phase = "none"
    while loop.time() < deadline:
        mine = [t for t in engine.inv.transfers.values() if t.disk_id == disk.id]
        phase = mine[-1].phase.value if mine else "none"
        if phase in done:
            return phase
        await asyncio.sleep(0.05)
    return phase


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Path]:
    """A real block device (loop) over a file prefilled with junk; a plain file when loop
    devices are unavailable (the populator treats any non-directory as the device)."""
    backing = tmp_path / "block.img"
    with backing.open("wb") as f:
        f.write(b"\xa5" * (32 * MiB))
    try:
        dev = subprocess.run(
            ["losetup", "-f", "--show", str(backing)], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        yield backing
        return
    try:
        yield Path(dev)
    finally:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            subprocess.run(["losetup", "-d", dev], check=True, capture_output=True)
