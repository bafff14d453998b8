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
from services.orchestrator.sources.contract import Conversion, Power, SourceVm
from shared.payloads import PlannedVm
from shared.sources.blocking import Blocking
from shared.sources.ovirt_connect import EngineClient
from shared.sources.problems import ConnectionProblem

T = TypeVar("T")

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

    async def close(self) -> None:
        try:
            await self.client.close()
        finally:
            self.pool.shutdown()
