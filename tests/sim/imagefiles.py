"""Small disk image files made as a user makes them (``qemu-img create``, ``qemu-io``), for
the tests of scenarios whose disks hold an image (``image: PATH``)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

MiB = 1 << 20


def make(path: Path, fmt: str, size: int, writes: list[tuple[int, int, int]]) -> Path:
    """An image of ``size`` bytes in ``fmt`` with each (pattern, offset, length) written."""
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), str(size)], check=True)
    for pattern, offset, length in writes:
        subprocess.run(
            ["qemu-io", "-f", fmt, "-c", f"write -P 0x{pattern:02x} {offset} {length}", str(path)],
            check=True,
            capture_output=True,
        )
    return path


def broken_qcow2(good: Path, path: Path) -> Path:
    """A qcow2 header qemu-img refuses to open (version 99): a file that is no image it
    can read (any other file reads as raw)."""
    header = bytearray(good.read_bytes()[:512])
    header[4:8] = (99).to_bytes(4, "big")
    path.write_bytes(header)
    return path


def guest_bytes(path: Path, size: int | None = None) -> bytes:
    """What a guest reads from the image (any format), padded with zeros to ``size``."""
    raw = path.with_name(path.name + ".guest-view")
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(path), str(raw)], check=True)
    data = raw.read_bytes()
    raw.unlink()
    return data + bytes((size or len(data)) - len(data))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
