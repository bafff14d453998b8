"""One stage of a warm (multi-stage) copy: what it writes, and what it reports.

Every stage writes into the same volume, so what a stage must write depends on what the
volume already holds (``shared.populator.stages``):

* a cold copy, or the first stage (``--fresh-volume``): the volume is empty, so this is the
  cold copy exactly: data extents read, zero extents left as holes (zeroed on a device);
* an incremental stage: only the extents dirty since ``--from-checkpoint``; a dirty range
  that now reads as zeros (discarded, ``write -z``) is zeroed on the target, never read;
* a later full stage (a checkpoint was lost, a disk is new in the backup): the volume holds
  an older copy, so every zero extent is zeroed too, not just skipped.

The stage's ``StageResult`` goes to the container's termination log, which the controller
reads into the CR's ``status.stages``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from services.populators.common.failure import PopulatorFailure
from services.populators.ovirt.source import Extent, ImageioSource
from shared.populator.stages import TERMINATION_LOG, BackupMode, StageArgs, StageResult

log = logging.getLogger("populator")

TERMINATION_LOG_ENV = "HOIST_TERMINATION_LOG"
"""Overrides ``TERMINATION_LOG`` (tests; a pod never sets it)."""


@dataclass(frozen=True)
class Plan:
    """The extents a stage writes: data ones read and written, zero ones zeroed."""

    extents: list[Extent]
    size: int
    fresh: bool
    """The volume starts empty: it is truncated on open and its holes need no zeroing."""
    whole: bool = True
    """The extents cover the whole disk (not an incremental stage's changes): what is
    written can be checksummed as the whole disk."""

    @property
    def data(self) -> int:
        return sum(e.length for e in self.extents if not e.zero)

    @property
    def zeros(self) -> int:
        return sum(e.length for e in self.extents if e.zero)

    @property
    def total(self) -> int:
        """What the progress counts: the data, plus the zeroing when it is real work."""
        return self.data if self.fresh else self.data + self.zeros


def check(stage: StageArgs | None) -> None:
    """Refuse flags that cannot give a correct copy, before a transfer locks the disk."""
    if stage is not None and stage.mode is BackupMode.INCREMENTAL and stage.fresh:
        raise PopulatorFailure(
            f"stage {stage.current or stage.backup_id} asks for an incremental copy into a "
            "fresh volume: only changes would be written; the first stage must be full"
        )


def plan(source: ImageioSource, stage: StageArgs | None) -> Plan:
    """What this stage writes, from imageio's extents (blocking: run it in a thread)."""
    check(stage)
    if stage is not None and stage.mode is BackupMode.INCREMENTAL:
        dirty = source.dirty_extents()
        size = dirty[-1].start + dirty[-1].length if dirty else 0
        changed = [Extent(d.start, d.length, d.zero) for d in dirty if d.dirty]
        return Plan(changed, size, fresh=False, whole=False)
    extents = source.extents()
    size = extents[-1].start + extents[-1].length if extents else 0
    return Plan(extents, size, fresh=stage is None or stage.fresh)


def termination_log() -> Path:
    return Path(os.environ.get(TERMINATION_LOG_ENV) or TERMINATION_LOG)


def report(result: StageResult, path: Path | None = None) -> bool:
    """Write ``result`` where the controller reads it; only into a file that exists (the
    kubelet makes the pod's; outside a pod nothing may be created in /dev)."""
    target = path or termination_log()
    if not target.exists():
        log.info("no termination log at %s: stage result %s not written", target, result)
        return False
    try:
        with target.open("w") as f:
            f.write(result.to_json())
    except OSError as exc:
        raise PopulatorFailure(
            f"the stage was copied but its result could not be written to {target}: {exc}"
        ) from exc
    return True
