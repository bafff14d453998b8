"""Starting a plan: the migration row, its VMs' pipelines, and the frozen plan on JetStream.

A start (or re-run) is one transaction: a ``migrations`` row numbered after the plan's last,
one ``vms`` row per VM to migrate with its pipeline (``steps``, Pending) and a task per disk
(DiskAllocation and DiskTransfer), and the ``PLAN_STARTED`` event in the outbox. So the
status API shows the whole pipeline from the first moment, and a crash either loses the
start entirely (the user retries) or keeps all of it (the outbox publishes it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.planner import db
from shared.payloads import PlanStarted, ProviderType, Step, StepState

# The steps each source's cold pipeline runs, in order (see the orchestrator).
_COLD: dict[ProviderType, tuple[Step, ...]] = {
    ProviderType.OVIRT: (
        Step.INITIALIZE,
        Step.POWER_OFF_SOURCE,
        Step.DISK_ALLOCATION,
        Step.DISK_TRANSFER,
        Step.VIRTUAL_MACHINE_CREATION,
        Step.CLEANUP,
    ),
    ProviderType.OPENSTACK: (
        Step.INITIALIZE,
        Step.POWER_OFF_SOURCE,
        Step.CONVERT_OPENSTACK_SNAPSHOT,
        Step.DISK_ALLOCATION,
        Step.DISK_TRANSFER,
        Step.VIRTUAL_MACHINE_CREATION,
        Step.CLEANUP,
    ),
}

#: Steps whose tasks are the VM's disks (task id = disk id).
PER_DISK_STEPS = (Step.DISK_ALLOCATION, Step.DISK_TRANSFER)

#: Every step's position, so steps an orchestrator reports that the planner did not
#: expect still sort where they run.
POSITION: dict[str, int] = {s.value: i for i, s in enumerate(Step)}


def steps_for(source: ProviderType) -> tuple[Step, ...]:
    return _COLD.get(source, _COLD[ProviderType.OVIRT])


async def record_migration(
    session: AsyncSession,
    frozen: PlanStarted,
    *,
    number: int,
    skipped: int = 0,
    revision: int | None = None,
) -> None:
    """Insert the migration of ``frozen`` with every VM Pending and its pipeline.

    ``revision`` is the value the rows get (default: the next of ``revision_seq``);
    ``skipped`` counts VMs an earlier migration of the plan already migrated.
    """
    rev = revision if revision is not None else await next_revision(session)
    now = datetime.now(UTC)
    await session.execute(
        insert(db.migrations).values(
            id=frozen.migration_id,
            plan_id=frozen.plan_id,
            number=number,
            phase="Running",
            frozen=frozen.model_dump(mode="json"),
            vms_total=len(frozen.vms),
            vms_skipped=skipped,
            started_at=now,
            revision=rev,
        )
    )
    if not frozen.vms:
        return
    await session.execute(
        insert(db.vms),
        [
            {
                "migration_id": frozen.migration_id,
                "vm_id": vm.vm_id,
                "plan_id": frozen.plan_id,
                "name": vm.name,
                "target_name": vm.target_name,
                "phase": "Pending",
                "bytes_total": sum(d.size_bytes for d in vm.disks),
                "revision": rev,
            }
            for vm in frozen.vms
        ],
    )
    pipeline = steps_for(frozen.source.type)
    step_rows: list[dict[str, Any]] = []
    task_rows: list[dict[str, Any]] = []
    for vm in frozen.vms:
        for step in pipeline:
            per_disk = step in PER_DISK_STEPS
            step_rows.append(
                {
                    "migration_id": frozen.migration_id,
                    "vm_id": vm.vm_id,
                    "step": step.value,
                    "position": POSITION[step.value],
                    "state": StepState.PENDING.value,
                    "progress_total": _step_total(step, (d.size_bytes for d in vm.disks))
                    if per_disk
                    else 0,
                }
            )
            if per_disk:
                task_rows.extend(
                    {
                        "migration_id": frozen.migration_id,
                        "vm_id": vm.vm_id,
                        "step": step.value,
                        "task": d.disk_id,
                        "name": d.name or d.pvc_name,
                        "state": StepState.PENDING.value,
                        "progress_total": d.size_bytes if step is Step.DISK_TRANSFER else 1,
                    }
                    for d in vm.disks
                )
    await _insert_many(session, db.steps, step_rows)
    await _insert_many(session, db.tasks, task_rows)


async def next_revision(session: AsyncSession) -> int:
    return int((await session.execute(select(db.revision_seq.next_value()))).scalar_one())


def _step_total(step: Step, sizes: Iterable[int]) -> int:
    """DiskTransfer counts bytes, DiskAllocation counts disks."""
    values = list(sizes)
    return sum(values) if step is Step.DISK_TRANSFER else len(values)


async def _insert_many(session: AsyncSession, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    # asyncpg caps a statement at 32,767 parameters; 1,000 rows stay far below.
    for i in range(0, len(rows), 1000):
        await session.execute(insert(table), list(rows[i : i + 1000]))
