"""Fixtures of the oVirt populator tests: the simulated engine (``tests.sim.ovirt.fixtures``,
one per module, a disk of its own per test), a loop device, and the populator run as a
real process with only its normal arguments and env, as it would in its pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from ovirt_imageio import client

from shared.populator.checksum import BLOCK_SIZE
from sim.ovirt.engine import Engine
from sim.ovirt.entities import Disk
from tests.sim.ovirt.fixtures import MiB
from tests.sim.ovirt.fixtures import engine as engine  # the fixture, per module


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


def populator_args(engine: Engine, disk: Disk, volume: str) -> list[str]:
    """The flags a populator pod of ``disk`` gets (``volume``: its volume's path there)."""
    return [
        f"--volume-path={volume}",
        "--secret-name=ovirt-secret",
        "--cr-name=populator-cr",
        "--cr-namespace=default",
        "--owner-uid=uid-1234",
        "--pvc-size=1Gi",
        f"--engine-url={engine.api_url}",
        f"--disk-id={disk.id}",
        "--metrics-port=0",
    ]


async def start_populator(
    engine: Engine,
    disk: Disk,
    volume: Path,
    env: dict[str, str] | None = None,
    extra: Sequence[str] = (),
) -> asyncio.subprocess.Process:
    """``extra``: more flags after the normal ones (a warm stage's)."""
    base = {k: v for k, v in os.environ.items() if k not in ("user", "password", "cacert")}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.populators.ovirt",
        *populator_args(engine, disk, str(volume)),
        *extra,
        env={**base, **(env if env is not None else creds_env(engine))},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_populator(
    engine: Engine,
    disk: Disk,
    volume: Path,
    env: dict[str, str] | None = None,
    extra: Sequence[str] = (),
) -> Run:
    proc = await start_populator(engine, disk, volume, env, extra)
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


async def imageio_checksum(engine: Engine, disk: Disk, algorithm: str = "sha256") -> str:
    """The source's block checksum (``shared.populator.checksum``) as imageio's own client
    computes it from the image (its guest view, through qemu-nbd)."""
    src = await engine.image_path(disk.id)
    answer = await asyncio.to_thread(
        client.checksum, str(src), block_size=BLOCK_SIZE, algorithm=algorithm
    )
    return str(answer["checksum"])


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
