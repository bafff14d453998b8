"""Multi-stage (warm) population: the stages a CR asks for, and the stages it reports.

A warm disk is copied in stages into one prime claim that lives across them: the first
stage copies everything, each later one only what changed since the checkpoint before it,
the last one after the source VM is off. The claim is handed to the user claim only after
the final stage.

Who writes what:

- the orchestrator makes the backups (an oVirt backup covers all of a VM's disks at once,
  so no single disk's populator may make one) and appends one ``Checkpoint`` per backup to
  ``spec.checkpoints`` of each disk's CR; it sets ``spec.finalCheckpoint`` with the stage
  made after the power-off. A CR created with ``checkpoints: []`` is multi-stage and waits
  for its first checkpoint; a CR without the key is copied once, cold.
- the controller runs one populator pod per stage, for the *last* checkpoint when it is not
  copied yet, and records each copied stage in ``status.stages`` (``Stage``). The
  orchestrator appends the next checkpoint once every disk copied the one before, or when
  the backup of the last one failed (its stage then stays uncopied, superseded: a pod still
  copying it is retired). It never replaces one, so only the first checkpoint of a CR is
  copied onto an empty volume (``StageArgs.fresh``): any later full stage zeroes what the
  source reads as zero, whatever an abandoned stage wrote before. Only the last stage of a
  CR whose ``finalCheckpoint`` is true ends in the hand-over.
- the pod copies its stage (``StageArgs`` flags) and writes its ``StageResult`` to its
  termination log, which the controller reads into the stage's record.

A stage is known by its checkpoint (``current``): the orchestrator waits for that checkpoint
to appear among the copied stages, not for a phase (a phase seen before the stage started
would be an old one).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.populator.checksum import BlockChecksum
from shared.populator.kinds import Obj

CHECKPOINTS = "checkpoints"
"""Spec key: the list of ``Checkpoint`` documents (present, even empty: multi-stage)."""
FINAL_CHECKPOINT = "finalCheckpoint"
"""Spec key: true once the last checkpoint of the list is the final one."""
STAGES = "stages"
"""Status key: the list of ``Stage`` documents, one per copied stage, oldest first."""
FAILED_CHECKPOINT = "failedCheckpoint"
"""Status key: the checkpoint whose stage failed for good (its pods failed past the
recreation limit). No pod copies it again; the CR waits (reason ``STAGE_FAILED``) for the
orchestrator, which either appends a new checkpoint (its backup had failed) or fails the VM."""
STAGE_FAILED = "StageFailed"
"""Status reason (phase Running) while ``FAILED_CHECKPOINT`` is the last checkpoint."""
STAGE_ANNOTATION = "hoist.io/stage"
"""On a stage's populator pod: the checkpoint (``current``) it copies."""
TERMINATION_LOG = "/dev/termination-log"
"""Where a stage pod writes its ``StageResult`` (the container's terminationMessagePath)."""


class BackupMode(StrEnum):
    """How a disk takes part in a backup (oVirt's ``backup_mode``)."""

    FULL = "full"
    """Copy the whole disk (the first stage, a disk new since the checkpoint, a lost one)."""
    INCREMENTAL = "incremental"
    """Copy only the dirty extents since ``previous``."""


@dataclass(frozen=True)
class Checkpoint:
    """One stage the orchestrator asks for (an item of ``spec.checkpoints``)."""

    current: str
    """The checkpoint the backup made (oVirt ``to_checkpoint_id``): the stage's identity."""
    backup_id: str
    previous: str = ""
    """The checkpoint the backup started from ("" for a full backup)."""
    mode: BackupMode = BackupMode.FULL

    _KEYS = {"current": "current", "backup_id": "backupId", "previous": "previous", "mode": "mode"}

    def to_dict(self) -> Obj:
        return {key: str(getattr(self, attr)) for attr, key in self._KEYS.items()}

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> Checkpoint:
        """``ValueError`` for a document lacking ``current`` or ``backupId``, or an unknown
        mode (the CRD's schema refuses those before they reach anyone)."""
        current, backup = str(doc.get("current") or ""), str(doc.get("backupId") or "")
        if not current or not backup:
            raise ValueError("a checkpoint needs current and backupId")
        return cls(
            current=current,
            backup_id=backup,
            previous=str(doc.get("previous") or ""),
            mode=BackupMode(str(doc.get("mode") or BackupMode.FULL)),
        )


@dataclass(frozen=True)
class Stage:
    """One copied stage as the controller records it (an item of ``status.stages``)."""

    current: str
    backup_id: str
    mode: str
    bytes: int
    """Bytes this stage wrote: data copied plus ranges zeroed."""
    started_at: str
    ended_at: str
    pod: str = ""

    _KEYS = {
        "current": "current",
        "backup_id": "backupId",
        "mode": "mode",
        "bytes": "bytes",
        "started_at": "startedAt",
        "ended_at": "endedAt",
        "pod": "pod",
    }

    def to_dict(self) -> Obj:
        return {key: getattr(self, attr) for attr, key in self._KEYS.items()}

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> Stage:
        try:
            written = max(0, int(doc.get("bytes") or 0))
        except (TypeError, ValueError):
            written = 0
        return cls(
            current=str(doc.get("current") or ""),
            backup_id=str(doc.get("backupId") or ""),
            mode=str(doc.get("mode") or ""),
            bytes=written,
            started_at=str(doc.get("startedAt") or ""),
            ended_at=str(doc.get("endedAt") or ""),
            pod=str(doc.get("pod") or ""),
        )


@dataclass(frozen=True)
class Stages:
    """A multi-stage CR's plan and record, read from the whole CR."""

    checkpoints: tuple[Checkpoint, ...]
    final: bool
    copied: tuple[Stage, ...]
    failed: str = ""
    """``FAILED_CHECKPOINT``: the checkpoint whose stage failed for good ("" for none)."""

    @classmethod
    def of(cls, cr: Mapping[str, Any]) -> Stages | None:
        """None for a single-stage (cold) CR, one whose spec has no ``checkpoints``."""
        spec = cr.get("spec") or {}
        if CHECKPOINTS not in spec:
            return None
        checkpoints = tuple(Checkpoint.of(c) for c in spec.get(CHECKPOINTS) or [])
        status = cr.get("status") or {}
        copied = tuple(Stage.of(s) for s in status.get(STAGES) or [])
        failed = str(status.get(FAILED_CHECKPOINT) or "")
        return cls(checkpoints, bool(spec.get(FINAL_CHECKPOINT)), copied, failed)

    def is_copied(self, current: str) -> bool:
        return any(s.current == current for s in self.copied)

    def pending(self) -> Checkpoint | None:
        """The stage to run now: the last checkpoint, unless it is copied already or its
        stage failed for good."""
        if not self.checkpoints:
            return None
        last = self.checkpoints[-1]
        if self.is_copied(last.current) or last.current == self.failed:
            return None
        return last

    def stuck(self) -> bool:
        """The last checkpoint's stage failed for good: a new checkpoint must come."""
        return bool(self.checkpoints) and self.checkpoints[-1].current == self.failed

    def index_of(self, current: str) -> int:
        """The stage's place (0: the first, whose volume starts empty); -1 when unknown."""
        for i, c in enumerate(self.checkpoints):
            if c.current == current:
                return i
        return -1

    def complete(self) -> bool:
        """Every stage copied, the last one final: the volume may be handed over."""
        return (
            self.final and bool(self.checkpoints) and self.is_copied(self.checkpoints[-1].current)
        )


@dataclass(frozen=True)
class StageArgs:
    """The flags a stage pod gets after the source's own (``PodArgs.stage``)."""

    backup_id: str
    mode: BackupMode
    previous: str
    current: str
    fresh: bool
    """The volume holds nothing yet (the first stage): zero ranges need not be written."""

    FLAGS = (
        ("--backup-id", "backup_id"),
        ("--backup-mode", "mode"),
        ("--from-checkpoint", "previous"),
        ("--checkpoint", "current"),
    )
    FRESH_FLAG = "--fresh-volume"

    def argv(self) -> list[str]:
        out = [f"{flag}={getattr(self, attr)}" for flag, attr in self.FLAGS]
        return [*out, self.FRESH_FLAG] if self.fresh else out

    @classmethod
    def add_arguments(cls, parser: Any) -> None:
        """The stage flags on an ``argparse`` parser (all optional: a cold pod has none)."""
        for flag, attr in cls.FLAGS:
            parser.add_argument(flag, dest=f"stage_{attr}", default="")
        parser.add_argument(cls.FRESH_FLAG, dest="stage_fresh", action="store_true")

    @classmethod
    def parsed(cls, namespace: Any) -> StageArgs | None:
        """The stage a pod was asked to copy; None for a cold (single-stage) pod."""
        backup = getattr(namespace, "stage_backup_id", "")
        if not backup:
            return None
        return cls(
            backup_id=backup,
            mode=BackupMode(getattr(namespace, "stage_mode", "") or BackupMode.FULL),
            previous=getattr(namespace, "stage_previous", ""),
            current=getattr(namespace, "stage_current", ""),
            fresh=bool(getattr(namespace, "stage_fresh", False)),
        )

    @classmethod
    def for_checkpoint(cls, checkpoint: Checkpoint, index: int) -> StageArgs:
        return cls(
            backup_id=checkpoint.backup_id,
            mode=checkpoint.mode,
            previous=checkpoint.previous,
            current=checkpoint.current,
            fresh=index == 0,
        )


@dataclass(frozen=True)
class StageResult:
    """What a populator pod reports when it succeeded (its termination message, JSON): a
    stage pod always, a cold oVirt pod too (for its ``checksum``)."""

    copied: int
    """Bytes of data read from the source and written."""
    zeroed: int
    """Bytes zeroed on the target (ranges the source reads as zero, discarded ones)."""
    checksum: BlockChecksum | None = None
    """The block checksum of the whole disk as written (a copy of the whole disk only; an
    incremental stage writes part of it and reports none)."""

    @property
    def bytes(self) -> int:
        return self.copied + self.zeroed

    def to_json(self) -> str:
        doc: dict[str, Any] = {"copied": self.copied, "zeroed": self.zeroed}
        if self.checksum is not None:
            doc["checksum"] = self.checksum.to_dict()
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def parse(cls, text: str) -> StageResult | None:
        """None when ``text`` is not a pod's result (a failure's message); a malformed
        ``checksum`` reads as none."""
        try:
            doc = json.loads(text)
            copied, zeroed = (max(0, int(doc[k])) for k in ("copied", "zeroed"))
        except (ValueError, TypeError, KeyError):
            return None
        checksum = None
        if isinstance(doc.get("checksum"), Mapping):
            with contextlib.suppress(ValueError):
                checksum = BlockChecksum.of(doc["checksum"])
        return cls(copied, zeroed, checksum)


def checkpoint_schema() -> Obj:
    """The CRD's schema of ``spec.checkpoints``."""
    return {
        "type": "array",
        "description": "Multi-stage (warm) copy: one item per backup, appended by the "
        "orchestrator; present (even empty) makes the CR multi-stage.",
        "items": {
            "type": "object",
            "required": ["current", "backupId"],
            "properties": {
                "current": {"type": "string", "minLength": 1},
                "backupId": {"type": "string", "minLength": 1},
                "previous": {"type": "string"},
                "mode": {"type": "string", "enum": [m.value for m in BackupMode]},
            },
        },
    }


def failed_schema() -> Obj:
    """The CRD's schema of ``status.failedCheckpoint``."""
    return {
        "type": "string",
        "description": "The checkpoint whose stage failed for good; none copies it again.",
    }


def stages_schema() -> Obj:
    """The CRD's schema of ``status.stages``."""
    return {
        "type": "array",
        "description": "The stages copied so far, oldest first.",
        "items": {
            "type": "object",
            "properties": {
                "current": {"type": "string"},
                "backupId": {"type": "string"},
                "mode": {"type": "string"},
                "bytes": {"type": "integer", "minimum": 0},
                "startedAt": {"type": "string"},
                "endedAt": {"type": "string"},
                "pod": {"type": "string"},
            },
        },
    }


def spec_with_stages(spec: Obj, checkpoints: Sequence[Checkpoint], final: bool) -> Obj:
    """``spec`` with its stage list replaced (the orchestrator's one way to write it)."""
    return {**spec, CHECKPOINTS: [c.to_dict() for c in checkpoints], FINAL_CHECKPOINT: final}
