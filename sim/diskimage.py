"""A user's disk image as the simulators' disk contents (``image: PATH`` in a scenario).

Both simulators (``sim/ovirt``, ``sim/openstack``) read the file the same way: its format
from ``qemu-img info`` (the extension says nothing: a ``.img`` may be qcow2), its allocation
from ``qemu-img map``, and they copy it into their own storage with ``qemu-img convert``,
which reads the file only, so the user's image is never changed, and keeps holes as holes.
Every ``-U`` (force share) is there so that an image a running VM holds open can be read.

Errors are ``ValueError`` naming the scenario key (``where``) and the file: the message is
what a user who mistyped a path sees.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MiB = 1 << 20
#: What the simulators take: qemu-img would read more (vmdk, vdi...), but a disk the demo
#: checks byte for byte comes from one of these, as Hoist's sources hand them over.
FORMATS = ("raw", "qcow2")


@dataclass(frozen=True)
class SourceImage:
    """A user's image file, as probed: what the guest sees of it, and what it holds."""

    path: Path
    format: str  # raw | qcow2
    virtual_size: int
    data_bytes: int  # allocated (data) bytes of the guest view, as qemu-img map reports


def resolve(ref: str | Path, base: Path | None) -> Path:
    """``~`` expanded; a relative path is relative to ``base`` (the scenario file's
    directory), else to the working directory."""
    path = Path(ref).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return path.absolute()


def _qemu_img(where: str, path: Path, *args: str) -> Any:
    argv = ["qemu-img", *args]
    try:
        run = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    except FileNotFoundError:
        raise ValueError(f"{where}: {path}: qemu-img is not installed") from None
    if run.returncode != 0:
        detail = (run.stderr.strip() or run.stdout.strip()).splitlines()
        raise ValueError(
            f"{where}: {path}: not a disk image qemu-img can read"
            + (f" ({detail[-1]})" if detail else "")
        )
    return json.loads(run.stdout)


def probe(where: str, path: Path) -> SourceImage:
    """The image at ``path``; ``ValueError`` if it is missing, unreadable or not raw/qcow2."""
    if not path.exists():
        raise ValueError(f"{where}: {path}: no such file")
    if not path.is_file():
        raise ValueError(f"{where}: {path}: not a file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"{where}: {path}: cannot read it: {exc.strerror or exc}") from None
    info = _qemu_img(where, path, "info", "-U", "--output=json", str(path))
    fmt = str(info.get("format"))
    if fmt not in FORMATS:
        raise ValueError(
            f"{where}: {path}: a {fmt} image; expected raw or qcow2 "
            f"(qemu-img convert -O qcow2 {path} NEW.qcow2 makes one)"
        )
    size = int(info.get("virtual-size") or 0)
    if size <= 0:
        raise ValueError(f"{where}: {path}: an empty image (virtual size 0)")
    extents = _qemu_img(where, path, "map", "-U", "--output=json", "-f", fmt, str(path))
    data = sum(int(e["length"]) for e in extents if e.get("data"))
    return SourceImage(path, fmt, size, data)


def fit(where: str, src: SourceImage, size: int | None, key: str = "size") -> int:
    """The disk's size: ``size`` if given, else the image's. A disk smaller than its image
    would cut the guest's data off: an error, naming both sizes."""
    if size is None:
        return src.virtual_size
    if size < src.virtual_size:
        raise ValueError(
            f"{where}: {key} {_human(size)} is smaller than the image's virtual size "
            f"{_human(src.virtual_size)} of {src.path}; leave {key} out to take the image's"
        )
    return size


def _human(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit} ({n} bytes)"
    return f"{n} bytes"


def convert(src: SourceImage, dst: Path, fmt: str, size: int) -> None:
    """The image's guest view into a new ``fmt`` file at ``dst``, grown to ``size`` (a disk
    the user resized past the image: the tail reads as zeros)."""
    if fmt not in FORMATS:
        raise ValueError(f"image format {fmt!r}: expected raw or qcow2")
    dst.unlink(missing_ok=True)
    subprocess.run(
        ["qemu-img", "convert", "-U", "-f", src.format, "-O", fmt, str(src.path), str(dst)],
        check=True,
        capture_output=True,
    )
    if size > src.virtual_size:
        if fmt == "raw":
            os.truncate(dst, size)  # a hole: no byte written
        else:
            subprocess.run(
                ["qemu-img", "resize", "-f", fmt, str(dst), str(size)],
                check=True,
                capture_output=True,
            )
