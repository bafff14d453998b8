"""Backups of the simulated engine driven as a client does (the real ovirtsdk4 and httpx
against the real imageio daemon), for ``test_backups.py``."""

from __future__ import annotations

import ssl
import time
import uuid
from typing import Any

import httpx
import ovirtsdk4.types as types

from sim.ovirt import entities as m
from sim.ovirt import scenario
from sim.ovirt.engine import Engine
from tests.sim.ovirt.fixtures import disk_spec

GRAIN = 64 << 10
DONE = (types.BackupPhase.READY, types.BackupPhase.FAILED, types.BackupPhase.SUCCEEDED)


def new_vm(engine: Engine, disks: int = 1, raw: int = 0, **extra: Any) -> m.Vm:
    """A running VM of its own (faults and "one backup per VM" are per disk and per VM)."""
    name = f"vm-{uuid.uuid4().hex[:8]}"
    b = scenario.Builder(seed=uuid.uuid4().int >> 64)
    b.domain = engine.inv.storage_domains[next(iter(engine.inv.storage_domains))]
    b.profile = engine.inv.disk_profiles[next(iter(engine.inv.disk_profiles))]
    specs = [
        disk_spec(f"{name}-d{i}", size="16MiB", format="cow", backup="incremental")
        for i in range(disks)
    ]
    specs += [disk_spec(f"{name}-raw{i}", size="8MiB") for i in range(raw)]
    vm = b.vm({"name": name, "nics": [], "disks": specs, **extra})
    vm.cluster_id = next(iter(engine.inv.clusters))
    vm.host_id = next(iter(engine.inv.hosts)) if vm.status == "up" else None
    engine.inv.disks.update(b.inv.disks)
    engine.inv.vms[vm.id] = vm
    return vm


def backups_service(conn: Any, vm_id: str) -> Any:
    return conn.system_service().vms_service().vm_service(vm_id).backups_service()


def start_backup(
    conn: Any, vm_id: str, disk_ids: list[str], from_cp: str | None = None, **kw: Any
) -> Any:
    """Add a backup and poll it (as the SDK example does) until ready or failed."""
    service = backups_service(conn, vm_id)
    backup = service.add(
        types.Backup(
            id=kw.get("backup_id"),
            from_checkpoint_id=from_cp,
            disks=[types.Disk(id=d) for d in disk_ids],
        ),
        require_consistency=True,
    )
    one = service.backup_service(backup.id)
    while backup.phase not in DONE:
        time.sleep(0.05)
        backup = one.get()
    return backup


def finalize_backup(conn: Any, vm_id: str, backup_id: str) -> Any:
    one = backups_service(conn, vm_id).backup_service(backup_id)
    one.finalize()
    while (backup := one.get()).phase not in (
        types.BackupPhase.SUCCEEDED,
        types.BackupPhase.FAILED,
    ):
        time.sleep(0.05)
    return backup


def backup_extents(
    conn: Any, engine: Engine, disk_id: str, backup_id: str
) -> tuple[int, list[dict[str, Any]]]:
    """Through an image transfer of the backup: the status and items of
    ``GET /images/<ticket>/extents?context=dirty`` from the real imageio daemon."""
    transfers = conn.system_service().image_transfers_service()
    t = transfers.add(
        types.ImageTransfer(
            disk=types.Disk(id=disk_id),
            backup=types.Backup(id=backup_id),
            direction=types.ImageTransferDirection.DOWNLOAD,
            format=types.DiskFormat.RAW,
        )
    )
    service = transfers.image_transfer_service(t.id)
    while t.phase == types.ImageTransferPhase.INITIALIZING:
        time.sleep(0.05)
        t = service.get()
    assert t.phase == types.ImageTransferPhase.TRANSFERRING, t.phase
    with httpx.Client(verify=ssl.create_default_context(cafile=engine.cert.ca_file)) as http:
        answer = http.get(f"{t.transfer_url}/extents", params={"context": "dirty"})
    service.finalize()
    while service.get().phase != types.ImageTransferPhase.FINISHED_SUCCESS:
        time.sleep(0.05)
    return answer.status_code, answer.json() if answer.status_code == 200 else []


def blocks(extents: list[dict[str, Any]], **want: bool) -> set[int]:
    """The 64 KiB blocks of the extents whose flags are all as ``want``."""
    out: set[int] = set()
    for e in extents:
        if all(e.get(k) == v for k, v in want.items()):
            out.update(range(e["start"] // GRAIN, (e["start"] + e["length"]) // GRAIN))
    return out


def written(ranges: list[Any], zero: bool | None = None) -> set[int]:
    """The 64 KiB blocks the writes ``ranges`` (in order) touched; with ``zero``, those whose
    last write was (True) or was not (False) a zeroed range: a block written with data and
    then zeroed reads as zeros, as on any disk."""
    last: dict[int, bool] = {}
    for r in ranges:
        for b in range(r.offset // GRAIN, (r.offset + r.length) // GRAIN):
            last[b] = r.zero
    return {b for b, was_zero in last.items() if zero is None or was_zero == zero}
