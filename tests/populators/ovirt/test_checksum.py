"""The copy's block checksum: verified against imageio's when it offers one, a corrupted
copy caught, and a digest reported (for others to compare) when it does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.populators.ovirt import stage as stages
from services.populators.ovirt.copy import Unit, hash_unit, units
from services.populators.ovirt.source import Extent
from shared.populator.checksum import BLOCK_SIZE, BlockChecksum, BlockHash, data_blocks
from shared.populator.stages import StageResult
from sim.ovirt.engine import Engine
from sim.ovirt.entities import Disk
from sim.ovirt.scenario import Fault
from tests.populators.ovirt.conftest import (
    assert_same_image,
    creds_env,
    imageio_checksum,
    run_populator,
)
from tests.sim.ovirt.fixtures import MiB, new_disk, transfer_phase


async def copied(engine: Engine, disk: Disk, tmp_path: Path) -> tuple[str, BlockChecksum]:
    """Run the populator into ``tmp_path/vol``: its stderr, and the checksum it reported in
    its termination log."""
    log = tmp_path / "termination-log"
    log.touch()
    (tmp_path / "vol").mkdir()
    env = creds_env(engine, **{stages.TERMINATION_LOG_ENV: str(log)})
    run = await run_populator(engine, disk, tmp_path / "vol", env)
    assert run.returncode == 0, run.stderr
    result = StageResult.parse(log.read_text())
    assert result is not None, log.read_text()
    assert result.checksum is not None, log.read_text()
    return run.stderr, result.checksum


@pytest.mark.parametrize("fmt", ["raw", "cow"])
async def test_copy_is_verified_with_imageios_checksum(
    engine: Engine, tmp_path: Path, fmt: str
) -> None:
    disk = new_disk(engine, format=fmt, layout="scattered", extent="512KiB", size="13MiB")
    stderr, checksum = await copied(engine, disk, tmp_path)
    assert "sha256 block checksum verified with imageio's" in stderr
    assert checksum.verified
    assert checksum.block_size == BLOCK_SIZE
    assert checksum.value == await imageio_checksum(engine, disk)
    await assert_same_image(engine, disk, tmp_path / "vol" / "disk.img")


async def test_corrupted_data_fails_with_both_checksums(engine: Engine, tmp_path: Path) -> None:
    disk = new_disk(engine)
    engine.add_fault(Fault("corrupt_data", disk=disk.id, after_bytes=3 * MiB + 5))
    run = await run_populator(engine, disk, tmp_path)
    assert run.returncode == 1
    line = run.last_line
    assert line.startswith("ovirt-populator: failed: checksum mismatch: imageio computed sha256")
    assert await imageio_checksum(engine, disk) in line
    assert "the volume is not a copy of the disk" in line
    assert await transfer_phase(engine, disk) == "finished_cleanup"


async def test_without_a_checksum_api_the_digest_is_reported(
    engine: Engine, tmp_path: Path
) -> None:
    disk = new_disk(engine, format="cow")
    engine.add_fault(Fault("no_checksum", disk=disk.id))
    stderr, checksum = await copied(engine, disk, tmp_path)
    assert "reported, not verified: imageio has no checksum API (HTTP 404" in stderr
    assert not checksum.verified
    assert checksum.value == await imageio_checksum(engine, disk)


def test_units_keep_blocks_whole_and_hash_like_imageio() -> None:
    """Unaligned extents across windows: every block lies in one unit, and hashing the
    units' buffers (stale bytes in the gaps) gives the checksum of the whole image."""
    size = 21 * MiB + 4096 * 3
    data = [(100 * 1024, 300 * 1024), (2 * MiB - 4096, 7 * MiB), (17 * MiB, 4 * MiB + 8192)]
    extents, pos = [], 0
    for offset, n in data:
        extents += [Extent(pos, offset - pos, True), Extent(offset, n, False)]
        pos = offset + n
    extents.append(Extent(pos, size - pos, True))
    image = bytearray(size)
    for i, (offset, n) in enumerate(data):
        image[offset : offset + n] = bytes([i + 1]) * n
    window = 4 * MiB
    made = list(units(extents, window))
    assert all(u.start % window == 0 and u.start + u.length <= u.start + window for u in made)
    for algorithm in ("sha256", "blake2b"):
        hasher = BlockHash(algorithm, MiB, size, data_blocks(data, MiB))
        buf = bytearray(b"\xee" * window)  # what an earlier unit left
        view = memoryview(buf)
        for u in reversed(made):  # any order
            for offset, n in u.pieces:
                view[offset - u.start : offset - u.start + n] = image[offset : offset + n]
            hash_unit(hasher, view, Unit(u.start, u.length, u.pieces))
        expected = BlockHash(algorithm, MiB, size, range((size + MiB - 1) // MiB))
        for block in range(expected.count):
            expected.add(block, expected.digest_of(image[block * MiB : (block + 1) * MiB]))
        assert hasher.hexdigest() == expected.hexdigest()


def test_checksum_text_and_termination_message_round_trip() -> None:
    checksum = BlockChecksum("sha256", BLOCK_SIZE, "ab" * 32, verified=True)
    assert BlockChecksum.parse(checksum.text()) == checksum
    assert BlockChecksum.parse("sha256:x:ab:verified") is None
    result = StageResult(copied=1, zeroed=2, checksum=checksum)
    assert StageResult.parse(result.to_json()) == result
    assert StageResult.parse('{"copied":1,"zeroed":2}') == StageResult(1, 2)
