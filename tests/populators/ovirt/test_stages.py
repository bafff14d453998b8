"""Warm stages of the oVirt populator: a full first stage, then only the changed extents.

The engine simulator has no backups (yet), so the stage situation is built as the offline
recipe does: a qcow2 image, a checkpoint bitmap added before the first copy, guest writes
(data and ``write -z``), a merged disabled bitmap exported by ``qemu-nbd -B``, and a ticket
with ``dirty`` on a real imageio daemon: the dirty extents the populator reads are the ones
oVirt's imageio would serve. The copy is ``populate.copy_disk``, the part below the engine's
transfer. The ``__main__`` path (flags to ``populate``, the termination log) runs against
the engine simulator with a full stage, and an incremental one its tickets cannot serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.populators.common.args import Credentials
from services.populators.common.failure import PopulatorFailure
from services.populators.common.metrics import Progress
from services.populators.common.tls import TlsPolicy
from services.populators.ovirt import stage as stages
from services.populators.ovirt.populate import Copied, copy_disk
from services.populators.ovirt.source import ImageioSource, NoDirtyExtents
from shared.populator.stages import TERMINATION_LOG, BackupMode, StageArgs, StageResult
from sim.certs import ServerCert, make_server_cert
from sim.ovirt import children
from sim.ovirt.engine import Engine
from sim.ovirt.imageio import ImageioDaemon
from sim.ovirt.sdkclient import connect
from tests.populators.ovirt.conftest import assert_same_image, run_populator, sha256
from tests.sim.ovirt.backup_helpers import finalize_backup, new_vm, start_backup
from tests.sim.ovirt.fixtures import MiB, transfer_phase

KiB = 1 << 10
SIZE = 32 * MiB  # the size of conftest's loop device
EXPORT = "sda"

FIRST = StageArgs(backup_id="b1", mode=BackupMode.FULL, previous="", current="ck1", fresh=True)
INCREMENTAL = StageArgs(
    backup_id="b2", mode=BackupMode.INCREMENTAL, previous="ck1", current="ck2", fresh=False
)
LATER_FULL = StageArgs(
    backup_id="b3", mode=BackupMode.FULL, previous="", current="ck3", fresh=False
)


# ---- the stage situation, offline ---------------------------------------------------------


class Image:
    """A qcow2 disk the test writes to as its guest would, with qemu's own tools."""

    def __init__(self, path: Path, size: int = SIZE) -> None:
        self.path = path
        self.size = size
        _run("qemu-img", "create", "-q", "-f", "qcow2", str(path), str(size))

    def write(self, *commands: str) -> None:
        """qemu-io commands (``write -P 0x41 0 1M``, ``write -z 20M 1M``): every enabled
        bitmap marks what they touch."""
        args = [a for c in commands for a in ("-c", c)]
        _run("qemu-io", "-f", "qcow2", *args, str(self.path))

    def bitmap(self, name: str, *ops: str) -> None:
        _run("qemu-img", "bitmap", *ops, str(self.path), name)

    def checkpoint(self, old: str, new: str, export: str) -> None:
        """As the engine's backup does: a new checkpoint starts, the old one is frozen, and
        ``export`` (disabled) holds what changed since ``old``."""
        self.bitmap(new, "--add")
        self.bitmap(old, "--disable")
        self.bitmap(export, "--add", "--disable")
        self.bitmap(export, "--merge", old)

    def raw_sha(self, scratch: Path) -> str:
        raw = scratch / f"{self.path.stem}.raw"
        _run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(self.path), str(raw))
        try:
            return sha256(raw)
        finally:
            raw.unlink()


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> ServerCert:
    return make_server_cert(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
async def imageio(
    tmp_path_factory: pytest.TempPathFactory, cert: ServerCert
) -> AsyncIterator[ImageioDaemon]:
    if shutil.which("qemu-nbd") is None or shutil.which("qemu-io") is None:
        pytest.skip("qemu-nbd and qemu-io are needed (qemu-utils)")
    daemon = ImageioDaemon(tmp_path_factory.mktemp("imageio"), cert)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()


@pytest.fixture
def tls(cert: ServerCert) -> TlsPolicy:
    return TlsPolicy(Credentials("admin@internal", "secret", cert.ca_pem, None, False))


@pytest.fixture
def sockets() -> Iterator[Path]:
    """A short directory: a unix socket's path must fit in 108 bytes, pytest's do not."""
    path = Path(tempfile.mkdtemp(prefix="hoist-nbd-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.asynccontextmanager
async def served(
    imageio: ImageioDaemon,
    tls: TlsPolicy,
    image: Image,
    sockets: Path,
    *,
    bitmap: str | None = None,
    dirty: bool = False,
) -> AsyncIterator[ImageioSource]:
    """The image through qemu-nbd (read-only, with ``bitmap`` as its one dirty bitmap) and
    an imageio ticket: the source a stage pod reads once its transfer is ready."""
    sock = sockets / f"{uuid.uuid4().hex[:8]}.sock"
    argv = ["qemu-nbd", "-r", "-f", "qcow2", "-x", EXPORT, "--persistent", "--shared=8"]
    argv += [f"--socket={sock}", *(["-B", bitmap] if bitmap else []), str(image.path)]
    process = await children.spawn(argv, sock.with_suffix(".log"))
    ticket = str(uuid.uuid4())
    try:
        for _ in range(200):
            if sock.exists() or process.returncode is not None:
                break
            await asyncio.sleep(0.05)
        assert sock.exists(), children.log_tail(sock.with_suffix(".log"))
        await imageio.add_ticket(
            ticket,
            size=image.size,
            url=f"nbd:unix:{sock}:exportname={EXPORT}",
            transfer_id=ticket,
            timeout=300,
            inactivity_timeout=120,
            dirty=dirty,
        )
        yield ImageioSource(f"{imageio.url}/images/{ticket}", tls)
    finally:
        with contextlib.suppress(Exception):
            await imageio.remove_ticket(ticket)
        await children.stop(process)  # qemu-nbd's lock goes with it: qemu-io may write


async def run_stage(
    source: ImageioSource, volume: Path, stage: StageArgs | None
) -> tuple[Copied, Progress]:
    progress = Progress("ovirt_progress", "uid-stage")
    options = await asyncio.to_thread(source.options)
    copied = await copy_disk(source, int(options["max_readers"]), volume, progress, stage)
    return copied, progress


@pytest.fixture(params=["filesystem", "block"])
def volume(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path]:
    """(the ``--volume-path``, the file or device holding the disk's bytes); the block one
    holds junk, as a reused device may."""
    if request.param == "block":
        device: Path = request.getfixturevalue("loop_device")
        return device, device
    directory = tmp_path / "volume"
    directory.mkdir()
    return directory, directory / "disk.img"


def read(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(length)


# ---- stages -------------------------------------------------------------------------------


async def test_full_then_incremental_stage_is_byte_exact(
    imageio: ImageioDaemon,
    tls: TlsPolicy,
    sockets: Path,
    tmp_path: Path,
    volume: tuple[Path, Path],
) -> None:
    volume_path, data = volume
    image = Image(tmp_path / "disk.qcow2")
    image.write("write -P 0x41 0 1M", "write -P 0x43 8M 2M", "write -P 0x44 20M 1M")
    image.bitmap("ck1", "--add")  # before the first copy, or its data would not count

    async with served(imageio, tls, image, sockets) as source:
        first, progress = await run_stage(source, volume_path, FIRST)
    assert first.data_bytes == 4 * MiB
    assert progress.total == 4 * MiB  # a fresh volume's holes are not work
    assert sha256(data, SIZE) == image.raw_sha(tmp_path)

    # the guest runs: overwrites, a discard over data, new data in a hole
    image.write("write -P 0x42 8704k 128k", "write -z 20M 1M", "write -P 0x45 16M 64k")
    image.checkpoint("ck1", "ck2", "m")
    async with served(imageio, tls, image, sockets, bitmap="m", dirty=True) as source:
        dirty = await asyncio.to_thread(source.dirty_extents)
        second, progress = await run_stage(source, volume_path, INCREMENTAL)

    assert sum(e.length for e in dirty) == SIZE  # the list covers the disk
    assert {(e.start, e.length) for e in dirty if e.dirty and e.zero} == {(20 * MiB, MiB)}
    assert second.result == StageResult(copied=192 * KiB, zeroed=MiB)
    assert progress.total == progress.transferred == second.result.bytes
    assert read(data, 20 * MiB, MiB) == bytes(MiB)  # the discarded range, 0x44 before
    assert read(data, 8 * MiB, 512 * KiB) == b"\x43" * (512 * KiB)  # untouched, kept
    assert sha256(data, SIZE) == image.raw_sha(tmp_path)
    if data.name == "disk.img":
        assert data.stat().st_size == SIZE
        assert data.stat().st_blocks * 512 <= 3 * MiB + 256 * KiB  # the zeroed range: a hole again


async def test_later_full_stage_over_stale_data_is_byte_exact(
    imageio: ImageioDaemon,
    tls: TlsPolicy,
    sockets: Path,
    tmp_path: Path,
    volume: tuple[Path, Path],
) -> None:
    """A checkpoint was lost: the whole disk again, over a volume holding other data."""
    volume_path, data = volume
    if data.name == "disk.img":
        data.write_bytes(b"\xa5" * SIZE)  # an older stage's bytes everywhere
    image = Image(tmp_path / "disk.qcow2")
    image.write("write -P 0x41 0 1M", "write -P 0x43 8M 2M", "write -z 12M 1M")

    async with served(imageio, tls, image, sockets) as source:
        later, progress = await run_stage(source, volume_path, LATER_FULL)

    assert (later.result.copied, later.result.zeroed) == (3 * MiB, SIZE - 3 * MiB)
    assert later.checksum is not None  # a full stage covers the whole disk: checksummed
    assert later.checksum.verified
    assert progress.total == progress.transferred == SIZE
    assert sha256(data, SIZE) == image.raw_sha(tmp_path)
    if data.name == "disk.img":
        assert data.stat().st_blocks * 512 <= 4 * MiB  # zero extents punched, not written


async def test_cold_copy_keeps_its_progress_and_truncates(
    imageio: ImageioDaemon, tls: TlsPolicy, sockets: Path, tmp_path: Path
) -> None:
    """No stage: today's copy exactly (a stale disk.img is truncated, holes are free)."""
    directory = tmp_path / "volume"
    directory.mkdir()
    (directory / "disk.img").write_bytes(b"\xa5" * (2 * SIZE))
    image = Image(tmp_path / "disk.qcow2")
    image.write("write -P 0x41 4M 1M")
    async with served(imageio, tls, image, sockets) as source:
        cold, progress = await run_stage(source, directory, None)
    assert (cold.result.copied, cold.result.zeroed) == (MiB, 0)
    assert cold.checksum is not None
    assert cold.checksum.verified
    assert progress.total == progress.transferred == MiB
    assert (directory / "disk.img").stat().st_size == SIZE
    assert sha256(directory / "disk.img") == image.raw_sha(tmp_path)


@pytest.mark.parametrize(
    ("bitmap", "dirty"),
    [("m", False), (None, True)],
    ids=["ticket-without-dirty", "export-without-bitmap"],
)
async def test_no_dirty_extents_fails_clearly_before_touching_the_volume(
    imageio: ImageioDaemon,
    tls: TlsPolicy,
    sockets: Path,
    tmp_path: Path,
    bitmap: str | None,
    dirty: bool,
) -> None:
    image = Image(tmp_path / "disk.qcow2")
    image.write("write -P 0x41 0 1M")
    image.bitmap("m", "--add", "--disable")
    directory = tmp_path / "volume"
    directory.mkdir()
    async with served(imageio, tls, image, sockets, bitmap=bitmap, dirty=dirty) as source:
        with pytest.raises(NoDirtyExtents) as failure:
            await run_stage(source, directory, INCREMENTAL)
    message = str(failure.value)
    assert "cannot serve dirty extents" in message
    assert "full stage" in message
    assert "404" in message
    assert "\n" not in message
    assert not (directory / "disk.img").exists()  # a full stage may follow on intact data


def test_incremental_stage_into_a_fresh_volume_is_refused() -> None:
    fresh = StageArgs("b2", BackupMode.INCREMENTAL, "ck1", "ck2", fresh=True)
    with pytest.raises(PopulatorFailure, match="first stage must be full"):
        stages.check(fresh)
    stages.check(INCREMENTAL)
    stages.check(None)


# ---- the termination log ------------------------------------------------------------------


def test_stage_result_goes_only_into_an_existing_termination_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = StageResult(copied=5, zeroed=7)
    log = tmp_path / "termination-log"
    assert not stages.report(result, log)
    assert not log.exists()
    log.touch()
    assert stages.report(result, log)
    assert StageResult.parse(log.read_text()) == result
    monkeypatch.setenv(stages.TERMINATION_LOG_ENV, str(log))
    assert stages.termination_log() == log
    monkeypatch.delenv(stages.TERMINATION_LOG_ENV)
    assert stages.termination_log() == Path(TERMINATION_LOG)


# ---- the pod's program, against the engine simulator --------------------------------------


def stage_env(engine: Engine, log: Path) -> dict[str, str]:
    return {
        "user": "admin@internal",
        "password": "secret",
        "cacert": engine.cert.ca_pem,
        stages.TERMINATION_LOG_ENV: str(log),
    }


async def backup_of(engine: Engine, vm: Any) -> Any:
    """A full backup of the VM's disks through ovirtsdk4, ready."""

    def run() -> Any:
        conn = connect(engine)
        try:
            return start_backup(conn, vm.id, [a.disk_id for a in vm.disk_attachments])
        finally:
            conn.close()

    return await asyncio.to_thread(run)


async def end_backup(engine: Engine, vm: Any, backup_id: str) -> None:
    def run() -> None:
        conn = connect(engine)
        try:
            finalize_backup(conn, vm.id, backup_id)
        finally:
            conn.close()

    await asyncio.to_thread(run)


@pytest.mark.parametrize("log_exists", [True, False])
async def test_pod_flags_reach_populate_with_a_full_stage(
    engine: Engine, tmp_path: Path, log_exists: bool
) -> None:
    vm = new_vm(engine)
    disk = engine.inv.disks[vm.disk_attachments[0].disk_id]
    backup = await backup_of(engine, vm)
    first = StageArgs(
        backup_id=backup.id,
        mode=BackupMode.FULL,
        previous="",
        current=backup.to_checkpoint_id,
        fresh=True,
    )
    log = tmp_path / "termination-log"
    if log_exists:
        log.touch()
    volume = tmp_path / "volume"
    volume.mkdir()
    run = await run_populator(engine, disk, volume, stage_env(engine, log), first.argv())
    await end_backup(engine, vm, backup.id)
    assert run.returncode == 0, run.stderr
    assert f"stage {first.current}: backup {backup.id}, full" in run.stderr
    await assert_same_image(engine, disk, volume / "disk.img")
    copied = re.search(r"copied (\d+) bytes of data", run.stderr)
    assert copied is not None
    if log_exists:
        result = StageResult.parse(log.read_text())
        assert result is not None
        assert (result.copied, result.zeroed) == (int(copied.group(1)), 0)
        assert result.checksum is not None
        assert result.checksum.verified
        doc = json.loads(log.read_text())
        assert doc == {"copied": result.copied, "zeroed": 0, "checksum": doc["checksum"]}
    else:
        assert not log.exists()  # never created: in a pod the kubelet makes it
    assert await transfer_phase(engine, disk) == "finished_success"


async def test_pod_incremental_stage_without_dirty_extents_fails_and_cancels(
    engine: Engine, tmp_path: Path
) -> None:
    """A full backup's tickets serve no dirty extents: a pod told to copy it incrementally
    fails with the one line and cancels its transfer."""
    vm = new_vm(engine)
    disk = engine.inv.disks[vm.disk_attachments[0].disk_id]
    backup = await backup_of(engine, vm)
    told = StageArgs(
        backup_id=backup.id,
        mode=BackupMode.INCREMENTAL,
        previous="ck0",
        current=backup.to_checkpoint_id,
        fresh=False,
    )
    log = tmp_path / "termination-log"
    log.touch()
    volume = tmp_path / "volume"
    volume.mkdir()
    run = await run_populator(engine, disk, volume, stage_env(engine, log), told.argv())
    await end_backup(engine, vm, backup.id)
    assert run.returncode == 1
    assert "cannot serve dirty extents" in run.last_line
    assert log.read_text() == ""
    assert await transfer_phase(engine, disk) == "finished_cleanup"
