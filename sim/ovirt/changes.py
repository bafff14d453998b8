"""Changing the simulated engine's inventory from Python, with the events the engine logs.

Tests and benchmarks change objects here instead of through the REST API (the simulator
serves no update calls): every change logs the audit-log event the real engine would, with
the references the real event carries, so a client following ``/events?from=N`` sees it.

    engine.changes.update_vm(vm_id, memory=8 << 30)   # USER_UPDATE_VM (35)
    engine.changes.set_vm_status(vm_id, "paused")     # VM_PAUSED_ERROR (139), VM_DOWN (61), ...
    engine.changes.remove_vm(vm_id)                   # USER_REMOVE_VM_FINISHED (113)
    engine.changes.update_disk(disk_id, status="illegal")  # USER_UPDATE_VM_DISK (88)
    engine.changes.remove_disk(disk_id)               # USER_FINISHED_REMOVE_DISK (2014)

Codes are the engine's ``AuditLogType``. The engine's events reference a VM, host, cluster,
data center or storage domain, never a disk: a disk change names the VMs it is attached to
(if any) and its storage domain.
"""

from __future__ import annotations

from typing import Any

from sim.ovirt import entities as m

USER_UPDATE_VM = 35
USER_REMOVE_VM_FINISHED = 113
USER_UPDATE_VM_DISK = 88
USER_FINISHED_REMOVE_DISK = 2014
VM_DOWN = 61
USER_RUN_VM = 32
VM_PAUSED_ERROR = 139
VM_MIGRATION_START = 62
VM_NOT_RESPONDING = 126
VM_SET_TO_UNKNOWN_STATUS = 142
_STATUS_EVENTS = {
    "down": VM_DOWN,
    "up": USER_RUN_VM,
    "paused": VM_PAUSED_ERROR,
    "migrating": VM_MIGRATION_START,
    "not_responding": VM_NOT_RESPONDING,
    "unknown": VM_SET_TO_UNKNOWN_STATUS,
}


class Changes:
    """Inventory changes with their events (``Engine.changes``)."""

    def __init__(self, inventory: m.Inventory) -> None:
        self.inv = inventory

    def _vm_event(self, code: int, text: str, vm: m.Vm) -> m.Event:
        cluster = self.inv.clusters.get(vm.cluster_id)
        return self.inv.add_event(
            code,
            text,
            vm_id=vm.id,
            host_id=vm.host_id,
            cluster_id=vm.cluster_id,
            data_center_id=cluster.data_center_id if cluster else None,
        )

    def update_vm(self, vm_id: str, **fields: Any) -> m.Event:
        """Set fields of ``entities.Vm`` (``memory``, ``cores``, ``ballooning``, ...)."""
        vm = self.inv.vms[vm_id]
        for name, value in fields.items():
            if not hasattr(vm, name):
                raise AttributeError(f"a VM has no field {name!r}")
            setattr(vm, name, value)
        return self._vm_event(USER_UPDATE_VM, f"VM {vm.name} configuration was updated", vm)

    def set_vm_status(self, vm_id: str, status: str) -> m.Event:
        """A status change the engine reports on its own (a paused VM, a lost host, ...)."""
        vm = self.inv.vms[vm_id]
        vm.status = status
        if status == "down":
            vm.host_id = None
        elif vm.host_id is None:
            vm.host_id = next(iter(self.inv.hosts))
        code = _STATUS_EVENTS.get(status, USER_UPDATE_VM)
        return self._vm_event(code, f"VM {vm.name} is {status}", vm)

    def remove_vm(self, vm_id: str, keep_disks: bool = False) -> m.Event:
        """Remove a VM and (unless ``keep_disks``, the engine's "detach only") its disks; the
        event still names the VM's id, as the engine's does."""
        vm = self.inv.vms.pop(vm_id)
        vm.power.note("removed")  # its guest is gone; the timeline stays readable
        self.inv.removed_vms[vm.id] = vm
        if not keep_disks:
            for attachment in vm.disk_attachments:
                self.inv.disks.pop(attachment.disk_id, None)
        return self._vm_event(USER_REMOVE_VM_FINISHED, f"VM {vm.name} was successfully removed", vm)

    def disk_events(
        self, code: int, text: str, disk: m.Disk, vms: list[m.Vm] | None = None
    ) -> list[m.Event]:
        """Log ``code`` about ``disk`` as the engine does: one event per VM it is attached to
        (default: the VMs it is attached to now), or one naming only its storage domain."""
        if vms is None:
            vms = self.inv.vms_of_disk(disk.id)
        if not vms:
            return [
                self.inv.add_event(
                    code, text, storage_domain_id=disk.storage_domain_id, disk_id=disk.id
                )
            ]
        return [
            self.inv.add_event(
                code,
                text,
                vm_id=vm.id,
                cluster_id=vm.cluster_id,
                storage_domain_id=disk.storage_domain_id,
                disk_id=disk.id,
            )
            for vm in vms
        ]

    def update_disk(self, disk_id: str, **fields: Any) -> list[m.Event]:
        """Set fields of ``entities.Disk`` (``status``, ``shareable``, ``storage_type``, ...):
        one event per VM the disk is attached to, or one naming its storage domain."""
        disk = self.inv.disks[disk_id]
        for name, value in fields.items():
            if not hasattr(disk, name):
                raise AttributeError(f"a disk has no field {name!r}")
            setattr(disk, name, value)
        return self.disk_events(USER_UPDATE_VM_DISK, f"Disk {disk.name} was updated", disk)

    def remove_disk(self, disk_id: str) -> list[m.Event]:
        """Remove a disk (detaching it from its VMs first, as the engine requires)."""
        disk = self.inv.disks.pop(disk_id)
        vms = self.inv.vms_of_disk(disk_id)
        for vm in vms:
            vm.disk_attachments = [a for a in vm.disk_attachments if a.disk_id != disk_id]
        return self.disk_events(
            USER_FINISHED_REMOVE_DISK, f"Disk {disk.name} was successfully removed", disk, vms
        )
