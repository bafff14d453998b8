"""Byte-for-byte checks of migrated disks: sha256 of what the guest saw on the source vs the
first ``size`` bytes of the target volume's backing file.

A disk's guest view is its virtual bytes: a raw file as it is, a qcow2 image through its
cluster map. Both are hashed from their extents: data ranges are read from the file in
4 MiB chunks, holes (and qcow2 zero clusters) are fed to the hash as zero blocks without
touching the disk, so a 20 GiB sparse disk costs the hashing of 20 GiB of zeros (CPU) but
only its data in reads. Source and target are hashed in two threads at once (``hashlib``
releases the GIL on large buffers). Extents come from ``SEEK_DATA``/``SEEK_HOLE`` for raw
files and from ``qemu-img map`` for qcow2; a qcow2 extent with no plain host offset
(compressed, or in a backing file) falls back to ``qemu-img convert`` to a sparse raw copy.

A populator's block checksum of what it copied (``shared.populator.checksum``, on the
volume) is checked against the same checksum of the source (``check_reported``).

``qemu-img compare`` is run as a second opinion (it also skips holes); the verdict is the
sha256 comparison, the comparison's output is reported alongside.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.populator.checksum import BlockChecksum, BlockHash, data_blocks

CHUNK = 4 << 20
_ZEROS = bytes(CHUNK)


@dataclass(frozen=True)
class Extent:
    """``length`` guest bytes at ``start``; ``offset`` is where they are in the file, or
    ``None`` for zeros (a hole, an unallocated or zero cluster)."""

    start: int
    length: int
    offset: int | None


@dataclass(frozen=True)
class Digest:
    sha256: str
    size: int  # guest bytes hashed
    data_bytes: int  # of which read from the file (the rest: holes, hashed as zeros)
    seconds: float


@dataclass(frozen=True)
class DiskComparison:
    source: Digest
    target: Digest
    qemu_compare: str | None  # qemu-img compare's verdict line, None when not run

    @property
    def match(self) -> bool:
        return self.source.sha256 == self.target.sha256 and self.source.size == self.target.size

    @property
    def qemu_identical(self) -> bool | None:
        """qemu-img's verdict (it also requires a longer target's tail to be zeros: the
        guest sees that tail too); None when it was not run."""
        return None if self.qemu_compare is None else self.qemu_compare.startswith("exit 0:")


class VerifyError(Exception):
    """A file could not be read or mapped (missing, not an image, qemu-img failed)."""


def image_format(path: Path) -> str:
    """``raw`` or ``qcow2`` (or what else ``qemu-img info`` says), from the file itself."""
    return str(_qemu_json(["qemu-img", "info", "--output=json", str(path)])["format"])


def virtual_size(path: Path, fmt: str) -> int:
    if fmt == "raw":
        return path.stat().st_size
    info = _qemu_json(["qemu-img", "info", "--output=json", "-f", fmt, str(path)])
    return int(info["virtual-size"])


def raw_extents(path: Path, size: int) -> list[Extent]:
    """Data and holes of a raw file up to ``size`` (past its end: zeros, as a Block volume's
    rounded-up tail or a short file reads)."""
    out: list[Extent] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        end = min(size, os.fstat(fd).st_size)
        pos = 0
        while pos < end:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after pos
                data = end
            data = min(data, end)
            if data > pos:
                out.append(Extent(pos, data - pos, None))
            if data >= end:
                break
            hole = min(os.lseek(fd, data, os.SEEK_HOLE), end)
            out.append(Extent(data, hole - data, data))
            pos = hole
    finally:
        os.close(fd)
    if end < size:
        out.append(Extent(end, size - end, None))
    return out


def qcow2_extents(path: Path) -> list[Extent] | None:
    """The guest view of a qcow2 image from ``qemu-img map``; ``None`` when some data has no
    plain host offset (compressed clusters, a backing chain): then only qemu can read it."""
    mapped = _qemu_json(["qemu-img", "map", "--output=json", "-f", "qcow2", str(path)])
    out = []
    for e in mapped:
        start, length = int(e["start"]), int(e["length"])
        if not e.get("data") or e.get("zero"):
            out.append(Extent(start, length, None))
        elif "offset" in e and int(e.get("depth", 0)) == 0:
            out.append(Extent(start, length, int(e["offset"])))
        else:
            return None
    return out


def hash_extents(path: Path, extents: list[Extent], size: int) -> Digest:
    """sha256 of ``size`` guest bytes laid out by ``extents`` (which must cover them)."""
    began = time.monotonic()
    digest = hashlib.sha256()
    done = data = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        for e in extents:
            if e.start != done:
                raise VerifyError(f"{path}: extents leave a gap at byte {done}")
            length = min(e.length, size - done)
            if e.offset is None:
                _feed_zeros(digest, length)
            else:
                data += _feed_file(digest, fd, e.offset, length, path)
            done += length
            if done >= size:
                break
    finally:
        os.close(fd)
    if done < size:
        _feed_zeros(digest, size - done)
    return Digest(digest.hexdigest(), size, data, time.monotonic() - began)


def _feed_zeros(digest: Any, length: int) -> None:
    view = memoryview(_ZEROS)
    while length:
        n = min(length, CHUNK)
        digest.update(view[:n])
        length -= n


def _feed_file(digest: Any, fd: int, offset: int, length: int, path: Path) -> int:
    """Read ``length`` bytes at ``offset``; a file shorter than that reads as zeros."""
    left = length
    while left:
        chunk = os.pread(fd, min(left, CHUNK), offset)
        if not chunk:
            _feed_zeros(digest, left)
            return length - left
        digest.update(chunk)
        offset += len(chunk)
        left -= len(chunk)
    return length


@contextlib.contextmanager
def guest_view(
    path: Path, fmt: str | None = None, size: int | None = None
) -> Iterator[tuple[Path, list[Extent], int]]:
    """(a file to read, its extents, the guest bytes wanted) for a disk image's guest view:
    its virtual size, or the first ``size`` bytes (a target volume larger than the disk is
    compared on the disk's size)."""
    if not path.exists():
        raise VerifyError(f"{path}: no such file")
    fmt = fmt or image_format(path)
    if fmt not in ("raw", "qcow2"):
        raise VerifyError(f"{path}: image format {fmt!r}: the demo reads raw and qcow2")
    wanted = virtual_size(path, fmt) if size is None else size
    if fmt == "raw":
        yield path, raw_extents(path, wanted), wanted
        return
    extents = qcow2_extents(path)
    if extents is not None:
        yield path, extents, wanted
        return
    with tempfile.TemporaryDirectory(prefix="hoist-verify-") as tmp:
        raw = Path(tmp) / "disk.raw"
        _run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(path), str(raw)])
        yield raw, raw_extents(raw, wanted), wanted


def guest_sha256(path: Path, fmt: str | None = None, size: int | None = None) -> Digest:
    """sha256 of a disk image's guest view (``guest_view``)."""
    with guest_view(path, fmt, size) as (readable, extents, wanted):
        return hash_extents(readable, extents, wanted)


def block_checksum(
    path: Path, fmt: str | None, size: int | None, algorithm: str, block_size: int
) -> str:
    """The block checksum (``shared.populator.checksum``, imageio's) of a disk image's
    guest view: what a populator reports for the disk it copied, computed here from the
    source image alone."""
    with guest_view(path, fmt, size) as (readable, extents, wanted):
        data = [(e.start, e.length) for e in extents if e.offset is not None]
        hasher = BlockHash(algorithm, block_size, wanted, data_blocks(data, block_size))
        fd = os.open(readable, os.O_RDONLY)
        try:
            for block in data_blocks(data, block_size):
                start = block * block_size
                buf = bytearray(min(block_size, wanted - start))
                for e in extents:
                    lo, hi = max(e.start, start), min(e.start + e.length, start + len(buf))
                    if e.offset is not None and lo < hi:
                        got = os.pread(fd, hi - lo, e.offset + lo - e.start)
                        buf[lo - start : lo - start + len(got)] = got
                hasher.add(block, hasher.digest_of(buf))
        finally:
            os.close(fd)
        return hasher.hexdigest()


@dataclass(frozen=True)
class ChecksumCheck:
    """The block checksum a populator reported for a disk against the source's own."""

    reported: BlockChecksum
    source: str

    @property
    def match(self) -> bool:
        return self.reported.value == self.source

    def json(self) -> dict[str, Any]:
        return {**self.reported.to_dict(), "source": self.source, "match": self.match}


def check_reported(
    reported: BlockChecksum, source: Path, source_format: str, size: int
) -> ChecksumCheck:
    value = block_checksum(source, source_format, size, reported.algorithm, reported.block_size)
    return ChecksumCheck(reported, value)


def compare_disk(
    source: Path, source_format: str, target: Path, size: int, *, qemu_compare: bool = True
) -> DiskComparison:
    """The source's guest view vs the target's first ``size`` bytes, hashed in parallel."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="sha256") as pool:
        src = pool.submit(guest_sha256, source, source_format, size)
        tgt = pool.submit(guest_sha256, target, "raw", size)
        verdict = _qemu_compare(source, source_format, target) if qemu_compare else None
        return DiskComparison(src.result(), tgt.result(), verdict)


def _qemu_compare(source: Path, fmt: str, target: Path) -> str | None:
    """``qemu-img compare``'s verdict. A target longer than the source passes when its tail
    is zeros (qemu-img's non-strict mode), as a rounded-up Block volume's is."""
    if shutil.which("qemu-img") is None:
        return None
    run = subprocess.run(
        ["qemu-img", "compare", "-f", fmt, "-F", "raw", str(source), str(target)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    lines = (run.stdout + run.stderr).strip().splitlines()
    return f"exit {run.returncode}: {lines[-1] if lines else ''}"


def _run(argv: list[str]) -> str:
    try:
        run = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    except FileNotFoundError:
        raise VerifyError(f"{argv[0]} is not installed (make setup installs qemu-utils)") from None
    if run.returncode != 0:
        raise VerifyError(f"{' '.join(argv)}: {run.stderr.strip() or run.stdout.strip()}")
    return run.stdout


def _qemu_json(argv: list[str]) -> Any:
    return json.loads(_run(argv))


def mib_per_second(size: int, seconds: float | None) -> float | None:
    if not seconds or seconds <= 0:
        return None
    return round(size / (1 << 20) / seconds, 1)
