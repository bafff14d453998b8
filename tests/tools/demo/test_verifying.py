"""The disk check on real files: raw, qcow2 (plain and compressed), sparse, a target
rounded up to whole MiB (Block), and a copy with one byte wrong."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
from pathlib import Path

import pytest

from tools import verifying as v

MiB = 1 << 20


def _sparse_raw(path: Path, size: int, blocks: dict[int, bytes]) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
        for offset, data in blocks.items():
            os.pwrite(f.fileno(), data, offset)
    return path


def _plain_sha(path: Path, size: int) -> str:
    """The obvious way: read every byte (zeros past the end)."""
    data = path.read_bytes()[:size]
    return hashlib.sha256(data + bytes(size - len(data))).hexdigest()


def _qemu(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    """A 12 MiB sparse disk: data at 0, a half-zero block at 5 MiB, data at the last 4 KiB."""
    return _sparse_raw(
        tmp_path / "disk.raw",
        12 * MiB,
        {
            0: os.urandom(MiB + 7),
            5 * MiB: os.urandom(MiB // 2) + bytes(MiB // 2),
            12 * MiB - 4096: os.urandom(4096),
        },
    )


def test_raw_extents_cover_the_file_and_skip_holes(raw: Path) -> None:
    extents = v.raw_extents(raw, 12 * MiB)
    assert extents[0].start == 0
    assert sum(e.length for e in extents) == 12 * MiB
    assert all(a.start + a.length == b.start for a, b in itertools.pairwise(extents))
    holes = sum(e.length for e in extents if e.offset is None)
    assert holes >= 8 * MiB  # the filesystem keeps the file sparse (block granularity)
    digest = v.guest_sha256(raw)
    assert digest.sha256 == _plain_sha(raw, 12 * MiB)
    assert digest.size == 12 * MiB
    assert digest.data_bytes == 12 * MiB - holes


def test_qcow2_is_hashed_as_the_guest_sees_it(raw: Path, tmp_path: Path) -> None:
    qcow2 = tmp_path / "disk.qcow2"
    _qemu("convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2))
    assert v.image_format(qcow2) == "qcow2"
    extents = v.qcow2_extents(qcow2)
    assert extents is not None
    assert any(e.offset is None for e in extents)
    digest = v.guest_sha256(qcow2)
    assert digest.sha256 == _plain_sha(raw, 12 * MiB)
    assert digest.size == 12 * MiB
    assert digest.data_bytes < qcow2.stat().st_size  # holes were never read


def test_a_compressed_qcow2_falls_back_to_qemu_img_convert(raw: Path, tmp_path: Path) -> None:
    qcow2 = tmp_path / "packed.qcow2"
    _qemu("convert", "-c", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2))
    assert v.qcow2_extents(qcow2) is None
    assert v.guest_sha256(qcow2, "qcow2").sha256 == _plain_sha(raw, 12 * MiB)


def test_an_empty_qcow2_made_by_qemu_img_create(tmp_path: Path) -> None:
    qcow2 = tmp_path / "empty.qcow2"
    _qemu("create", "-f", "qcow2", str(qcow2), "3M")
    digest = v.guest_sha256(qcow2)
    assert digest.sha256 == hashlib.sha256(bytes(3 * MiB)).hexdigest()
    assert digest.data_bytes == 0


def test_a_large_sparse_disk_is_hashed_without_reading_its_holes(tmp_path: Path) -> None:
    big = _sparse_raw(tmp_path / "big.raw", 256 * MiB, {100 * MiB: b"x" * MiB})
    digest = v.guest_sha256(big)
    assert digest.data_bytes <= 2 * MiB  # one MiB of data (filesystem blocks round it)
    expected = hashlib.sha256()
    for offset in range(0, 256 * MiB, 4 * MiB):
        chunk = bytearray(4 * MiB)
        if offset <= 100 * MiB < offset + 4 * MiB:
            start = 100 * MiB - offset
            chunk[start : start + MiB] = b"x" * MiB
        expected.update(chunk)
    assert digest.sha256 == expected.hexdigest()


def test_a_block_target_rounded_up_matches_on_the_disk_size(raw: Path, tmp_path: Path) -> None:
    qcow2 = tmp_path / "odd.qcow2"
    blocks = {MiB: os.urandom(MiB), 5 * MiB: b"e" * 512}
    odd = _sparse_raw(tmp_path / "odd.raw", 5 * MiB + 512, blocks)
    _qemu("convert", "-f", "raw", "-O", "qcow2", str(odd), str(qcow2))
    target = tmp_path / "pv"
    _qemu("convert", "-f", "raw", "-O", "raw", str(odd), str(target))
    with target.open("r+b") as f:
        f.truncate(6 * MiB)  # a Block volume is whole MiB
    result = v.compare_disk(qcow2, "qcow2", target, 5 * MiB + 512)
    assert result.match, result
    assert result.source.size == result.target.size == 5 * MiB + 512
    assert result.qemu_compare is not None
    assert result.qemu_compare.startswith("exit 0")


def test_a_short_target_reads_as_zeros_past_its_end(tmp_path: Path) -> None:
    """A Filesystem volume's disk.img may be shorter than the disk when its tail is a hole."""
    src = _sparse_raw(tmp_path / "src.raw", 4 * MiB, {0: b"a" * 4096})
    short = _sparse_raw(tmp_path / "short.raw", 8192, {0: b"a" * 4096})
    assert v.compare_disk(src, "raw", short, 4 * MiB, qemu_compare=False).match


def test_one_wrong_byte_is_a_mismatch(raw: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.raw"
    copy.write_bytes(raw.read_bytes())
    with copy.open("r+b") as f:
        f.seek(5 * MiB + 100)
        byte = f.read(1)
        f.seek(5 * MiB + 100)
        f.write(bytes([byte[0] ^ 1]))
    result = v.compare_disk(raw, "raw", copy, 12 * MiB)
    assert not result.match
    assert result.source.sha256 != result.target.sha256
    assert result.qemu_compare is not None
    assert not result.qemu_compare.startswith("exit 0")


def test_data_in_a_hole_of_the_source_is_a_mismatch(raw: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.raw"
    copy.write_bytes(raw.read_bytes())
    os.truncate(copy, 12 * MiB)
    with copy.open("r+b") as f:
        f.seek(9 * MiB)
        f.write(b"\x01")
    assert not v.compare_disk(raw, "raw", copy, 12 * MiB, qemu_compare=False).match


def test_errors_are_verify_errors(tmp_path: Path) -> None:
    with pytest.raises(v.VerifyError, match="no such file"):
        v.guest_sha256(tmp_path / "missing")
    text = tmp_path / "notes.vmdk"
    _qemu("create", "-f", "vmdk", str(text), "1M")
    with pytest.raises(v.VerifyError, match="image format 'vmdk'"):
        v.guest_sha256(text)


def test_rates() -> None:
    assert v.mib_per_second(100 * MiB, 4.0) == 25.0
    assert v.mib_per_second(MiB, None) is None
    assert v.mib_per_second(MiB, 0.0) is None


@pytest.mark.parametrize("fmt", ["raw", "qcow2", "qcow2-compressed"])
@pytest.mark.parametrize("algorithm", ["sha256", "blake2b"])
def test_block_checksum_is_imageios_and_checks_a_reported_one(
    raw: Path, tmp_path: Path, fmt: str, algorithm: str
) -> None:
    """The demo's block checksum of a source image is the one imageio's client computes
    (the guest view, through qemu-nbd); a populator's reported checksum is checked with it."""
    from ovirt_imageio import client

    from shared.populator.checksum import BlockChecksum

    image = raw
    if fmt != "raw":
        image = tmp_path / "disk.qcow2"
        extra = ["-c"] if fmt == "qcow2-compressed" else []
        _qemu("convert", *extra, "-f", "raw", "-O", "qcow2", str(raw), str(image))
    disk_fmt = "raw" if fmt == "raw" else "qcow2"
    want = client.checksum(str(image), block_size=MiB, algorithm=algorithm)["checksum"]
    assert v.block_checksum(image, disk_fmt, None, algorithm, MiB) == want
    good = BlockChecksum(algorithm, MiB, want, verified=False)
    assert v.check_reported(good, image, disk_fmt, 12 * MiB).match
    bad = BlockChecksum(algorithm, MiB, "0" * len(want), verified=True)
    check = v.check_reported(bad, image, disk_fmt, 12 * MiB)
    assert not check.match
    assert check.json()["source"] == want
