"""The oVirt populator's flow: transfer, copy, finalize; or cancel, always.

1. Log in (SSO) and create a download image transfer for ``--disk-id`` (of the stage's
   backup, for a warm stage); while the engine says the disk is locked, wait and try again
   (up to ``LOCK_WAIT`` seconds).
2. Wait for ``transferring``. ``paused_system`` means the engine could not set it up.
3. Use ``transfer_url`` (the host's imageio) if it answers, else ``proxy_url``.
4. Copy (``copy_disk``: the whole disk, or what a stage needs, ``stage.plan``), keeping
   the ticket alive if the copy goes idle; fsync. A copy of the whole disk is hashed as it
   is written (imageio's block checksum, ``shared.populator.checksum``) and, when imageio
   offers its checksum API, compared with the one imageio computes meanwhile over the
   source (``verify``): a mismatch fails the pod.
5. Finalize and wait for ``finished_success``. On any failure: cancel the transfer (so
   the disk is unlocked at once, not after the inactivity timeout) and report one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.populators.common.args import Credentials
from services.populators.common.failure import PopulatorFailure
from services.populators.common.metrics import Progress
from services.populators.common.tls import TlsError, TlsPolicy
from services.populators.common.volume import VolumeWriter
from services.populators.ovirt import stage as stages
from services.populators.ovirt import verify
from services.populators.ovirt.copy import Copier, readers_for
from services.populators.ovirt.engine import DiskLocked, EngineClient, TransferState
from services.populators.ovirt.source import ImageioSource
from shared.populator.checksum import BlockChecksum
from shared.populator.stages import StageArgs, StageResult

log = logging.getLogger("populator")

LOCK_WAIT = 600.0
PHASE_WAIT = 300.0
INACTIVITY_TIMEOUT = 120
POLL = 0.2


@dataclass
class Copied:
    """What ``copy_disk`` wrote."""

    url: str
    readers: int
    data_bytes: int
    zeroed: int
    """Bytes the volume had to zero (none for holes of a fresh ``disk.img``)."""
    retries: int
    direct: bool
    checksum: BlockChecksum | None = None

    @property
    def result(self) -> StageResult:
        return StageResult(copied=self.data_bytes, zeroed=self.zeroed, checksum=self.checksum)


@dataclass
class Outcome(Copied):
    transfer_id: str = ""


async def _create(engine: EngineClient, disk_id: str, backup_id: str | None) -> TransferState:
    deadline = time.monotonic() + LOCK_WAIT
    delay = 0.5
    while True:
        try:
            return await asyncio.to_thread(
                engine.create_transfer, disk_id, INACTIVITY_TIMEOUT, backup_id
            )
        except DiskLocked as exc:
            if time.monotonic() + delay > deadline:
                raise PopulatorFailure(
                    f"disk {disk_id} stayed locked for {LOCK_WAIT:.0f} s: {exc}"
                ) from exc
            log.info("disk %s is locked, trying again in %.1f s: %s", disk_id, delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


FAILED_PHASES = frozenset({"paused_system", "finished_failure", "cancelled_system"})


async def _wait_phase(
    engine: EngineClient,
    transfer_id: str,
    wanted: set[str],
    failed: frozenset[str] = FAILED_PHASES,
) -> TransferState:
    deadline = time.monotonic() + PHASE_WAIT
    while time.monotonic() < deadline:
        state = await asyncio.to_thread(engine.get_transfer, transfer_id)
        if state is None or state.phase in wanted:
            return state or TransferState(transfer_id, "finished_success", None, None)
        if state.phase in failed:
            raise PopulatorFailure(
                f"engine put transfer {transfer_id} in phase {state.phase} (setup failed on "
                "the host, e.g. imageio not running)"
            )
        await asyncio.sleep(POLL)
    raise PopulatorFailure(f"transfer {transfer_id} did not reach {sorted(wanted)} in time")


async def _pick_source(
    state: TransferState, tls: TlsPolicy
) -> tuple[ImageioSource, dict[str, object]]:
    """transfer_url when the host answers, else the engine's proxy."""
    errors = []
    for url in (state.transfer_url, state.proxy_url):
        if not url:
            continue
        source = ImageioSource(url, tls)
        try:
            options = await asyncio.to_thread(source.options)
            return source, options
        except TlsError:
            raise
        except PopulatorFailure as exc:
            log.info("imageio at %s not usable: %s", url, exc)
            errors.append(str(exc))
    raise PopulatorFailure("no imageio endpoint answered: " + "; ".join(errors or ["no URLs"]))


async def populate(
    engine_url: str,
    disk_id: str,
    volume_path: Path,
    creds: Credentials,
    progress: Progress,
    stage: StageArgs | None = None,
) -> Outcome:
    """Copy the disk into the volume: all of it (cold, ``stage`` None), or one stage of a
    warm copy through the transfer of the stage's backup."""
    stages.check(stage)
    tls = TlsPolicy(creds)
    engine = EngineClient(engine_url, creds.user, creds.password, tls)
    log.info("engine %s, disk %s, %s", engine_url, disk_id, creds.describe())
    if stage is not None:
        log.info(
            "stage %s: backup %s, %s from checkpoint %r%s",
            stage.current,
            stage.backup_id,
            stage.mode,
            stage.previous,
            ", fresh volume" if stage.fresh else "",
        )
    try:
        await asyncio.to_thread(engine.login)
        transfer = await _create(engine, disk_id, stage.backup_id if stage else None)
        try:
            outcome = await _transfer(engine, transfer, volume_path, tls, progress, stage)
        except BaseException as exc:
            await _cancel(engine, transfer.id, exc)
            raise
        return outcome
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(engine.logout)
        engine.close()


async def _cancel(engine: EngineClient, transfer_id: str, why: BaseException) -> None:
    log.info("cancelling transfer %s after: %s", transfer_id, why)
    try:
        await asyncio.to_thread(engine.action, transfer_id, "cancel")
        await _wait_phase(
            engine, transfer_id, {"finished_cleanup", "finished_failure"}, failed=frozenset()
        )
    except Exception as exc:
        log.warning("could not cancel transfer %s: %s", transfer_id, exc)


async def _transfer(
    engine: EngineClient,
    transfer: TransferState,
    volume_path: Path,
    tls: TlsPolicy,
    progress: Progress,
    stage: StageArgs | None,
) -> Outcome:
    state = await _wait_phase(engine, transfer.id, {"transferring"})
    source, options = await _pick_source(state, tls)
    max_readers = int(str(options.get("max_readers", 1)))
    log.info("transfer %s ready at %s", transfer.id, source.url)
    copied = await copy_disk(source, max_readers, volume_path, progress, stage, options)
    await asyncio.to_thread(engine.action, transfer.id, "finalize")
    await _wait_phase(engine, transfer.id, {"finished_success"})
    progress.done()
    return Outcome(**vars(copied), transfer_id=transfer.id)


async def copy_disk(
    source: ImageioSource,
    max_readers: int,
    volume_path: Path,
    progress: Progress,
    stage: StageArgs | None = None,
    options: Mapping[str, object] | None = None,
) -> Copied:
    """The copy below the engine's transfer: from a ready imageio ticket into the volume,
    synced. ``stage`` None (cold) or a fresh full stage copy the whole disk into an empty
    volume; a later stage writes what ``stage.plan`` says over the earlier stages' data.
    A copy of the whole disk is checksummed (``verify``); ``options`` is imageio's OPTIONS
    answer (its ``features`` say whether it has the checksum API; None: ask it)."""
    plan = await asyncio.to_thread(stages.plan, source, stage)
    extents = plan.extents
    progress.set_total(plan.total)
    readers = readers_for(extents, max_readers)
    log.info(
        "copy via %s: %d bytes, %d of data in %d extents, %d to zero, %d readers%s",
        source.url,
        plan.size,
        plan.data,
        sum(not e.zero for e in extents),
        plan.zeros,
        readers,
        "" if plan.fresh else ", over the volume's data",
    )
    check = await verify.start(source, plan, options) if plan.whole else None
    volume = await asyncio.to_thread(VolumeWriter.open, volume_path, plan.size, plan.fresh)
    # The imports' and the setup's objects live as long as the process: frozen, the
    # collections that the copy's short-lived objects trigger stop walking them (~1% of a
    # scattered copy's CPU went to those walks).
    gc.freeze()
    try:
        copier = Copier(
            source,
            volume,
            progress,
            readers,
            count_zeros=not plan.fresh,
            hasher=check.hasher if check else None,
        )
        copy = asyncio.ensure_future(asyncio.to_thread(copier.run, extents))
        try:
            while not copy.done():
                await asyncio.wait({copy}, timeout=INACTIVITY_TIMEOUT / 4)
                if not copy.done() and copier.idle_seconds > INACTIVITY_TIMEOUT / 4:
                    await asyncio.to_thread(copier.keepalive)
        finally:
            if not copy.done():  # we were cancelled (SIGTERM): readers finish their range
                copier.stop()
                await asyncio.wait({copy})
        copy.result()
        await asyncio.to_thread(volume.finish)
        direct = volume.direct
    finally:
        volume.close()
    checksum = await check.finish() if check is not None else None
    return Copied(source.url, readers, plan.data, volume.zeroed, copier.retries, direct, checksum)
