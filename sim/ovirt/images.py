"""Disk images the simulated storage domains hold: real raw and qcow2 files with data
patterns, exported read-only through ``qemu-nbd`` so imageio reports their real extents.

Patterns (``layout``):

* ``large``: data in a few big extents (``extent`` bytes each) spread over the disk;
* ``scattered``: ``extent``-sized (1 MiB by default) data extents at random aligned offsets.

Or a user's image file (``source``, a scenario's ``image: PATH``): its bytes, converted to
the disk's format (``sim/diskimage.py``), instead of a pattern.

Every 4 KiB block of data carries its own offset, so a block written at the wrong place
fails a byte-exact comparison; one block per data extent is explicitly zero (allocated
zeros are data to qemu, and must survive as zeros).
"""

from __future__ import annotations

import asyncio
import os
import random
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sim import diskimage
from sim.ovirt import children

MiB = 1 << 20
BLOCK = 4096
_POOL = random.Random(42).randbytes(6 * MiB)  # offsets < 1 MiB + chunks <= 4 MiB


@dataclass(frozen=True)
class ImageSpec:
    """What a disk image looks like: size, how much of it holds data, and where."""

    virtual_size: int
    data_share: float = 0.25
    fmt: str = "raw"  # raw | qcow2 (oVirt: raw | cow)
    layout: str = "large"  # large | scattered
    extent: int = 64 * MiB
    seed: int = 1
    #: The user's image the disk holds (then ``data_share``, ``layout`` and ``extent`` mean
    #: nothing); ``virtual_size`` may exceed the image's: the disk was grown.
    source: diskimage.SourceImage | None = None


def data_extents(spec: ImageSpec) -> list[tuple[int, int]]:
    """(offset, length) of the data extents, sorted, aligned to 4 KiB, not overlapping
    (of the pattern: a disk from a user's image has none of these)."""
    if spec.source is not None:
        raise ValueError(f"{spec.source.path}: a user's image has no pattern extents")
    extent = max(BLOCK, min(spec.extent, spec.virtual_size) // BLOCK * BLOCK)
    slots = spec.virtual_size // extent
    wanted = min(slots, round(spec.virtual_size * spec.data_share / extent))
    if wanted <= 0:
        return []
    if spec.layout == "scattered":
        chosen = sorted(random.Random(spec.seed).sample(range(slots), wanted))
    else:
        step = slots / wanted
        chosen = sorted({int(i * step) for i in range(wanted)})
    return [(slot * extent, extent) for slot in chosen]


def _fill(chunk: memoryview, offset: int) -> None:
    """Deterministic bytes for ``offset``: a slice of the pool, each block stamped."""
    start = (offset // BLOCK * 7919 * 64) % MiB
    chunk[:] = _POOL[start : start + len(chunk)]
    for pos in range(0, len(chunk), BLOCK):
        struct.pack_into("<QQ", chunk, pos, offset + pos, ~(offset + pos) & (2**64 - 1))


def write_raw(path: Path, spec: ImageSpec) -> int:
    """A sparse raw file per ``spec``; returns the bytes of data written."""
    buf = bytearray(4 * MiB)
    view = memoryview(buf)
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, spec.virtual_size)
        for start, length in data_extents(spec):
            pos = start
            while pos < start + length:
                n = min(len(buf), start + length - pos)
                _fill(view[:n], pos)
                if pos == start and n >= 2 * BLOCK:
                    view[BLOCK : 2 * BLOCK] = bytes(BLOCK)  # allocated zeros
                os.pwrite(fd, view[:n], pos)
                pos += n
            written += length
    finally:
        os.close(fd)
    return written


def make_image(path: Path, spec: ImageSpec) -> Path:
    """Create the image at ``path`` (qcow2: written raw, then converted, sparse kept)."""
    if spec.source is not None:
        diskimage.convert(spec.source, path, spec.fmt, spec.virtual_size)
        return path
    if spec.fmt == "raw":
        write_raw(path, spec)
        return path
    if spec.fmt != "qcow2":
        raise ValueError(f"image format {spec.fmt!r}: expected raw or qcow2")
    raw = path.with_suffix(".raw-src")
    write_raw(raw, spec)
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)],
        check=True,
        capture_output=True,
    )
    raw.unlink()
    return path


class NbdExport:
    """``qemu-nbd`` serving one image read-only over a unix socket, up to 8 clients;
    ``bitmap`` also exports that dirty bitmap (``qemu:dirty-bitmap:<name>``)."""

    def __init__(self, image: Path, fmt: str, socket: Path, bitmap: str | None = None) -> None:
        self.image = image
        self.fmt = fmt
        self.socket = socket
        self.bitmap = bitmap
        self.log = socket.with_suffix(".log")
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        """The ticket URL imageio understands."""
        return f"nbd:unix:{self.socket}"

    async def start(self, within: float = 10) -> None:
        self.socket.unlink(missing_ok=True)
        self._process = await children.spawn(
            [
                "qemu-nbd",
                "--read-only",
                "--persistent",
                "--shared=8",
                f"--format={self.fmt}",
                f"--socket={self.socket}",
                "--cache=writeback",
                *([f"--bitmap={self.bitmap}"] if self.bitmap else []),
                str(self.image),
            ],
            self.log,
        )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self._process.returncode is not None:
                break
            if self.socket.exists():
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(
            f"qemu-nbd for {self.image} did not start: " + children.log_tail(self.log)
        )

    async def stop(self) -> None:
        if self._process is not None:
            await children.stop(self._process)
            self._process = None
        self.socket.unlink(missing_ok=True)
