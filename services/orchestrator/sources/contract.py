"""What the pipeline asks of a source provider, whatever its type.

Every call is idempotent and safe to repeat after a crash: power calls look at the state
first, OpenStack conversion finds the artifacts an earlier run made by their deterministic
names (``naming.artifact``). Failures are ``SourceError`` with a machine-readable reason and
whether retrying can help (``permanent``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from shared.errors import HoistError
from shared.payloads import PlannedVm


class Power(StrEnum):
    ON = "On"
    OFF = "Off"
    OTHER = "Other"  # suspended, migrating, paused, in transition: not safe to copy


class SourceError(HoistError):
    """A source call failed: ``reason`` is CamelCase (``VmNotFound``, ``DiskLocked``,
    ``SourceUnavailable``), ``permanent`` says whether trying again can help.

    Neither a ``PermanentError`` nor a ``RetryLater``: the runner sorts it on its own (it
    counts temporary ones, fails the VM after too many, and drops the provider's
    connection so the next call opens a fresh one), and a temporary one is retried after
    ``RETRY_SECONDS`` (``retry_after``)."""

    RETRY_SECONDS = 10.0

    def __init__(self, reason: str, message: str, *, permanent: bool = False) -> None:
        super().__init__(
            message, reason=reason, retry_after=None if permanent else self.RETRY_SECONDS
        )


@dataclass(frozen=True)
class SourceVm:
    """The VM as the source sees it now."""

    vm_id: str
    name: str
    power: Power
    status: str  # the source's own word (oVirt "up", Nova "ACTIVE")
    disk_ids: tuple[str, ...] = ()
    #: Why the VM cannot be migrated now (locked disk, snapshot in progress...); empty: fine.
    blockers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Conversion:
    """Progress of turning an OpenStack VM's disks into images (``convert``)."""

    done: bool
    #: disk_id -> Glance image id, for every disk once ``done``.
    images: dict[str, str] = field(default_factory=dict)
    #: disk_id -> the image's size in bytes (the populator copies that many).
    sizes: dict[str, int] = field(default_factory=dict)
    #: What is being waited on, for the step's detail ("volume hoist-vol-... creating").
    waiting: str = ""


class Source(Protocol):
    async def inspect(self, vm: PlannedVm) -> SourceVm:
        """The VM now; ``SourceError("VmNotFound", permanent=True)`` when it is gone."""
        ...

    async def power_state(self, vm_id: str) -> SourceVm:
        """The VM's power and status only (no disks, no blockers): what PowerOffSource polls
        while the guest shuts down. One read of the VM, where ``inspect`` also lists its
        snapshots and every image transfer of the engine (oVirt) or each volume (Cinder)."""
        ...

    async def shutdown(self, vm_id: str) -> None:
        """Ask the guest to power off (ACPI); returns at once, ``inspect`` shows the effect."""
        ...

    async def stop(self, vm_id: str) -> None:
        """Power the VM off now (forced)."""
        ...

    async def start(self, vm_id: str) -> None:
        """Power the VM on (to leave the source as it was after a failure or cancel)."""
        ...

    async def convert(self, migration_id: str, vm: PlannedVm) -> Conversion:
        """OpenStack: advance the snapshot -> volume -> image chain one call further; call
        again until ``done``. oVirt: ``Conversion(done=True)`` with no images (not needed)."""
        ...

    async def remove_artifacts(self, migration_id: str, vm: PlannedVm) -> None:
        """Delete every temporary snapshot, volume and image ``convert`` made for this VM
        (found by name); a no-op when there are none."""
        ...

    async def close(self) -> None: ...
