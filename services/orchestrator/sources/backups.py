"""What a warm migration asks of its source: changed-block backups and their checkpoints.

Only oVirt can (its incremental backup API, 4.4 and later); the planner refuses warm plans
on other sources, and a source without these calls is ``SourceUnsupported`` here too.

A backup covers all of a VM's disks at once and the engine runs one per VM at a time, so
the orchestrator makes it (never a disk's populator) and tells each disk's populator CR
which backup and checkpoint its next stage copies (``shared.populator.stages``).

Every call is idempotent: a backup's id is chosen by the caller (a digest of migration,
VM, precopy and attempt), so a call repeated after a crash finds the backup it made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

#: Reasons a backup call fails with (``SourceError.reason``).
BACKUP_REFUSED = "BackupRefused"
"""The engine refused to start the backup now (another backup, a locked disk): retried."""
CHECKPOINT_UNUSABLE = "CheckpointUnusable"
"""The checkpoint a backup was to start from is gone or invalid: the next one is full."""


class BackupPhase(StrEnum):
    """oVirt's ``BackupPhase``; ``succeeded`` and ``failed`` are final."""

    INITIALIZING = "initializing"
    STARTING = "starting"
    READY = "ready"
    FINALIZING = "finalizing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Backup:
    """A backup as the engine shows it now."""

    id: str
    phase: BackupPhase
    to_checkpoint: str
    from_checkpoint: str = ""
    #: disk id -> ``full`` | ``incremental`` (known once the backup is ready).
    modes: dict[str, str] = field(default_factory=dict)
    #: Why it failed, from the engine's events about it (empty when unknown).
    why: str = ""
    #: The engine says only a full backup can follow (the checkpoint it started from is
    #: gone or unusable): the next backup starts from no checkpoint.
    needs_full: bool = False

    @property
    def over(self) -> bool:
        return self.phase in (BackupPhase.SUCCEEDED, BackupPhase.FAILED)


@dataclass(frozen=True)
class CheckpointInfo:
    id: str
    parent_id: str
    state: str  # created | invalid


@runtime_checkable
class BackupSource(Protocol):
    async def start_backup(
        self, vm_id: str, backup_id: str, disk_ids: list[str], from_checkpoint: str
    ) -> Backup:
        """Start backup ``backup_id`` of the disks (``from_checkpoint`` "": a full one), or
        return it as it is when it exists already. ``SourceError`` ``BACKUP_REFUSED``
        (temporary) or ``CHECKPOINT_UNUSABLE`` when the engine refuses."""
        ...

    async def backup(self, vm_id: str, backup_id: str) -> Backup | None:
        """The backup now, with its disks' modes once ready; None when the engine has no
        such backup (forgotten after a restart)."""
        ...

    async def finalize_backup(self, vm_id: str, backup_id: str) -> None:
        """End the backup (its disks are unlocked); a no-op once it is over or gone."""
        ...

    async def checkpoints(self, vm_id: str) -> list[CheckpointInfo]:
        """The VM's checkpoints, oldest (the root) first."""
        ...

    async def remove_checkpoint(self, vm_id: str, checkpoint_id: str) -> None:
        """Remove a checkpoint (the engine removes only the root); a no-op when gone."""
        ...
