"""A VM on an oVirt engine, as the pipeline needs it: its state now, power off and on.

Every SDK call runs in the source's thread pool through ``EngineClient.run`` (a connection
of the small pool shared with nothing else). Power calls read the VM first and act only
when there is something to do, and a ``409`` answer (the engine refusing because the VM
changed state meanwhile) is settled by reading it again: shutting down a VM that is down,
or starting one that is up, succeeds without a call.

The disks need no conversion on oVirt: the populator reads them through image transfers,
so ``convert`` is done at once and there are no artifacts to remove.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import ovirtsdk4 as sdk
import ovirtsdk4.types as types

from services.orchestrator.sources import errors
from services.orchestrator.sources.backups import (
    BACKUP_REFUSED,
    CHECKPOINT_UNUSABLE,
    Backup,
    BackupPhase,
    CheckpointInfo,
)
from services.orchestrator.sources.contract import Conversion, Power, SourceError, SourceVm
from shared.payloads import PlannedVm
from shared.sources.blocking import Blocking
from shared.sources.ovirt_connect import EngineClient
from shared.sources.problems import ConnectionProblem

T = TypeVar("T")

FULL_BACKUP_NEEDED = 10791
"""The engine's event VM_INCREMENTAL_BACKUP_FAILED_FULL_VM_BACKUP_NEEDED."""

# VM states in which copying its disks is unsafe or the engine refuses to act, with why.
_BLOCKING_STATUS = {
    "migrating": "the VM is migrating between hosts",
    "image_locked": "the VM's images are locked (a snapshot or disk operation is running)",
    "saving_state": "the VM is saving its memory state (suspending)",
    "restoring_state": "the VM is restoring its memory state (resuming)",
    "not_responding": "the VM's host does not respond to the engine",
    "unknown": "the engine does not know the VM's state",
}
_TRANSFER_OVER = frozenset(
    {"finished_success", "finished_failure", "finished_cleanup", "cancelled"}
)
# States from which ``start`` powers the VM on (a suspended VM is resumed).
_STARTABLE = frozenset({"down", "suspended"})
_ON_ITS_WAY_UP = frozenset({"up", "powering_up", "wait_for_launch", "reboot_in_progress"})


@dataclass(frozen=True)
class _Read:
    vm: Any  # types.Vm with its disk attachments and disks
    snapshots: list[Any]
    transfers: list[Any]


def _status(vm: Any) -> str:
    status = getattr(vm, "status", None)
    return str(status.value) if isinstance(status, types.VmStatus) else "unknown"


def _power(status: str) -> Power:
    if status == "up":
        return Power.ON
    if status == "down":
        return Power.OFF
    return Power.OTHER


def _enum(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


def blockers(read: _Read, planned: PlannedVm | None) -> tuple[list[str], list[str]]:
    """The VM's disk ids, and why it cannot be migrated now (empty: it can)."""
    vm = read.vm
    found: list[str] = []
    why = [_BLOCKING_STATUS[s]] if (s := _status(vm)) in _BLOCKING_STATUS else []
    names: dict[str, str] = {}
    for att in vm.disk_attachments or []:
        disk = att.disk
        if disk is None or disk.id is None:
            continue
        found.append(disk.id)
        names[disk.id] = name = f"disk {disk.alias or disk.name or disk.id} ({disk.id})"
        status = _enum(disk.status)
        if status == "locked":
            why.append(f"{name} is locked: another operation (a copy, a snapshot) holds it")
        elif status == "illegal":
            why.append(f"{name} is illegal: its image is inconsistent; fix it in oVirt")
    for snap in read.snapshots:
        status, label = _enum(snap.snapshot_status), snap.description or snap.id
        if status == "locked":
            why.append(f"snapshot {label!r} is being created or removed")
        elif status == "in_preview":
            why.append(f"snapshot {label!r} is in preview: commit or undo it first")
    for t in read.transfers:
        disk_id = t.disk.id if t.disk is not None else (t.image.id if t.image else None)
        phase = _enum(t.phase)
        if disk_id in names and phase not in _TRANSFER_OVER:
            why.append(f"image transfer {t.id} of {names[disk_id]} is {phase}")
    if planned is not None:
        for disk in planned.disks:
            if disk.disk_id not in names:
                why.append(f"disk {disk.disk_id} of the plan is no longer attached to the VM")
    return found, why


class OvirtSource:
    """``Source`` for one oVirt engine (see ``contract.Source``)."""

    def __init__(self, client: EngineClient, pool: Blocking) -> None:
        self.client = client
        self.pool = pool
        self.where = client.where

    async def _run(self, fn: Callable[[sdk.Connection], T]) -> T:
        try:
            return await self.client.run(fn)
        except ConnectionProblem as problem:
            raise errors.from_problem(problem) from None

    # ---------------------------------------------------------------- inspect

    async def inspect(self, vm: PlannedVm) -> SourceVm:
        def read(conn: sdk.Connection) -> _Read | None:
            system = conn.system_service()
            service = system.vms_service().vm_service(vm.vm_id)
            try:
                got = service.get(follow="disk_attachments.disk")
                snapshots = service.snapshots_service().list()
            except sdk.NotFoundError:
                return None
            transfers = system.image_transfers_service().list()
            return _Read(got, list(snapshots), list(transfers))

        found = await self._run(read)
        if found is None:
            raise errors.vm_not_found(f"VM {vm.vm_id}", self.where)
        disk_ids, why = blockers(found, vm)
        status = _status(found.vm)
        return SourceVm(
            vm_id=vm.vm_id,
            name=found.vm.name or vm.name,
            power=_power(status),
            status=status,
            disk_ids=tuple(disk_ids),
            blockers=tuple(why),
        )

    async def power_state(self, vm_id: str) -> SourceVm:
        def read(conn: sdk.Connection) -> Any:
            try:
                return conn.system_service().vms_service().vm_service(vm_id).get()
            except sdk.NotFoundError:
                return None

        got = await self._run(read)
        if got is None:
            raise errors.vm_not_found(f"VM {vm_id}", self.where)
        status = _status(got)
        return SourceVm(vm_id=vm_id, name=got.name or "", power=_power(status), status=status)

    # ---------------------------------------------------------------- power

    async def shutdown(self, vm_id: str) -> None:
        """ACPI shutdown; a guest that ignores it stays up (``inspect`` shows it), and the
        pipeline then calls ``stop`` after its graceful timeout."""
        await self._act(vm_id, "shutdown", done=frozenset({"down", "powering_down"}))

    async def stop(self, vm_id: str) -> None:
        await self._act(vm_id, "stop", done=frozenset({"down"}))

    async def start(self, vm_id: str) -> None:
        """Power on a down VM (resume a suspended one); a VM still powering down is waited
        for (``SourceBusy``, temporary): starting it then leaves it as it was."""
        await self._act(vm_id, "start", done=_ON_ITS_WAY_UP, allowed=_STARTABLE)

    async def _act(
        self, vm_id: str, action: str, done: frozenset[str], allowed: frozenset[str] | None = None
    ) -> None:
        """``action`` unless the VM's status is in ``done``; only from ``allowed`` ones."""

        def act(conn: sdk.Connection) -> tuple[str, str]:
            service = conn.system_service().vms_service().vm_service(vm_id)
            try:
                status = _status(service.get())
                if status in done:
                    return status, ""
                if allowed is not None and status not in allowed:
                    return status, f"it is {status}"
                getattr(service, action)()
                return status, ""
            except sdk.NotFoundError:
                return "gone", ""
            except (sdk.AuthError, sdk.ConnectionError, sdk.TimeoutError):
                raise  # the client explains these (credentials, network)
            except sdk.Error as exc:
                if exc.code is None or exc.code >= 500:
                    raise
                # The engine refused (409: the VM changed state meanwhile): read it again.
                detail = getattr(exc.fault, "detail", None) or str(exc)
                try:
                    status = _status(service.get())
                except sdk.NotFoundError:
                    return "gone", ""
                return status, "" if status in done else f"it is {status}: {detail}"

        status, refused = await self._run(act)
        outcome = "gone" if status == "gone" else refused
        errors.settle_power(outcome, action=action, vm=f"VM {vm_id}", where=self.where)

    # ---------------------------------------------------------------- conversion

    async def convert(self, migration_id: str, vm: PlannedVm) -> Conversion:
        """Nothing to convert: the populator reads oVirt disks through image transfers."""
        return Conversion(done=True)

    async def remove_artifacts(self, migration_id: str, vm: PlannedVm) -> None:
        return None

    # ---------------------------------------------------------------- backups (warm)

    async def start_backup(
        self, vm_id: str, backup_id: str, disk_ids: list[str], from_checkpoint: str
    ) -> Backup:
        def start(conn: sdk.Connection) -> Any:
            backups = conn.system_service().vms_service().vm_service(vm_id).backups_service()
            try:
                return backups.backup_service(backup_id).get()
            except sdk.NotFoundError:
                pass
            try:
                return backups.add(
                    types.Backup(
                        id=backup_id,
                        from_checkpoint_id=from_checkpoint or None,
                        disks=[types.Disk(id=d) for d in disk_ids],
                    )
                )
            except (sdk.AuthError, sdk.ConnectionError, sdk.TimeoutError):
                raise
            except sdk.Error as exc:
                if exc.code is None or exc.code >= 500:
                    raise
                return _refusal(exc, from_checkpoint)

        got = await self._run(start)
        if isinstance(got, SourceError):
            raise got
        return _backup(got, {}, "")

    async def backup(self, vm_id: str, backup_id: str) -> Backup | None:
        def read(conn: sdk.Connection) -> tuple[Any, dict[str, str], str, bool] | None:
            system = conn.system_service()
            service = system.vms_service().vm_service(vm_id).backups_service()
            try:
                got = service.backup_service(backup_id).get()
                modes: dict[str, str] = {}
                if _enum(got.phase) == BackupPhase.READY:
                    for disk in service.backup_service(backup_id).disks_service().list():
                        modes[disk.id] = _enum(disk.backup_mode) or "full"
            except sdk.NotFoundError:
                return None
            why, full = "", False
            if _enum(got.phase) == BackupPhase.FAILED:
                events = list(system.events_service().list(search=backup_id, max=5))
                why = "; ".join(e.description for e in events if e.description)
                full = any(e.code == FULL_BACKUP_NEEDED for e in events)
            return got, modes, why, full

        found = await self._run(read)
        if found is None:
            return None
        got, modes, why, full = found
        return _backup(got, modes, why, needs_full=full or "checkpoint" in why.lower())

    async def finalize_backup(self, vm_id: str, backup_id: str) -> None:
        def finalize(conn: sdk.Connection) -> None:
            service = (
                conn.system_service()
                .vms_service()
                .vm_service(vm_id)
                .backups_service()
                .backup_service(backup_id)
            )
            try:
                # Before ready the engine refuses to finalize (the caller asks again later);
                # after, there is nothing left to end.
                if _enum(service.get().phase) == BackupPhase.READY:
                    service.finalize()
            except sdk.NotFoundError:
                return
            except (sdk.AuthError, sdk.ConnectionError, sdk.TimeoutError):
                raise
            except sdk.Error as exc:
                if exc.code is None or exc.code >= 500:
                    raise
                # It changed phase meanwhile (finalizing, failed): nothing left to end.

        await self._run(finalize)

    async def checkpoints(self, vm_id: str) -> list[CheckpointInfo]:
        def read(conn: sdk.Connection) -> list[Any]:
            vm = conn.system_service().vms_service().vm_service(vm_id)
            try:
                return list(vm.checkpoints_service().list())
            except sdk.NotFoundError:
                return []

        found = await self._run(read)
        infos = [
            CheckpointInfo(c.id, c.parent_id or "", _enum(c.state) or "created") for c in found
        ]
        return _root_first(infos)

    async def remove_checkpoint(self, vm_id: str, checkpoint_id: str) -> None:
        def remove(conn: sdk.Connection) -> None:
            vm = conn.system_service().vms_service().vm_service(vm_id)
            try:
                vm.checkpoints_service().checkpoint_service(checkpoint_id).remove()
            except sdk.NotFoundError:
                return

        await self._run(remove)

    async def close(self) -> None:
        try:
            await self.client.close()
        finally:
            self.pool.shutdown()


def _refusal(exc: Any, from_checkpoint: str) -> SourceError:
    """The engine's refusal to start a backup, sorted: a checkpoint it cannot start from
    (gone, invalid) makes the next backup a full one; anything else is tried again."""
    detail = str(getattr(exc.fault, "detail", None) or exc).strip("[] ")
    if from_checkpoint and "checkpoint" in detail.lower():
        return SourceError(
            CHECKPOINT_UNUSABLE,
            f"the engine cannot start a backup from checkpoint {from_checkpoint}: {detail}",
        )
    return SourceError(BACKUP_REFUSED, f"the engine refused to start a backup: {detail}")


def _backup(got: Any, modes: dict[str, str], why: str, *, needs_full: bool = False) -> Backup:
    return Backup(
        id=got.id,
        phase=BackupPhase(_enum(got.phase) or BackupPhase.INITIALIZING),
        to_checkpoint=got.to_checkpoint_id or "",
        from_checkpoint=got.from_checkpoint_id or "",
        modes=modes,
        why=why,
        needs_full=needs_full,
    )


def _root_first(infos: list[CheckpointInfo]) -> list[CheckpointInfo]:
    """The chain from its root (the engine lists in no promised order)."""
    children = {c.parent_id: c for c in infos if c.parent_id}
    known = {c.id for c in infos}
    roots = [c for c in infos if not c.parent_id or c.parent_id not in known]
    ordered: list[CheckpointInfo] = []
    for root in roots:
        node: CheckpointInfo | None = root
        while node is not None and node not in ordered:
            ordered.append(node)
            node = children.get(node.id)
    return ordered + [c for c in infos if c not in ordered]
