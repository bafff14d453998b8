"""Turning ``plan.started`` parts and cancel requests into VM rows the runner drives.

A large plan arrives in parts (each repeats the header and carries some of the VMs); parts
may come in any order, twice, or interleaved with a cancel. Each part is applied in one
transaction with its inbox claim (``shared.db.messaging.idempotent``): the migration row is
upserted (the header is taken from whichever part comes first; they are identical), and its
VMs inserted as Queued at the first step of their source's pipeline, ``position`` keeping
the plan's order across parts. A cancel may arrive before the part that carries a VM: it is
kept on the migration row and applied when the VM arrives. A cutover change is kept on the
migration row when it is newer than the one there (by its revision), whether or not the
plan's parts have arrived yet.

The runner takes each Queued row from there, when it is due.

Next: services/orchestrator/runner.py
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, func, literal, or_, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.db import migrations, vms
from shared import envelope as env
from shared.payloads import MigrationType, PlanCancelRequested, PlanCutoverChanged, PlanStarted
from shared.pipeline import VM_WAITING, steps_of

PART_SPAN = 1_000_000
"""Positions of part N are N * PART_SPAN + index: the plan's order across parts."""


async def accept_part(event: env.Envelope[Any], session: AsyncSession) -> None:
    data: PlanStarted = event.data
    header = data.model_dump(mode="json", exclude={"vms", "part", "parts", "vms_total"})
    insert = pg_insert(migrations).values(
        id=data.migration_id,
        plan_id=data.plan_id,
        plan_name=data.plan_name,
        header=header,
        source_provider=data.source.id,
        parts=data.parts,
        parts_seen=[data.part],
        vms_total=data.vms_total if data.vms_total is not None else len(data.vms),
        cutover=data.cutover,
    )
    seen = migrations.c.parts_seen
    row = (
        await session.execute(
            insert.on_conflict_do_update(
                index_elements=[migrations.c.id],
                set_={
                    "plan_id": insert.excluded.plan_id,
                    "plan_name": insert.excluded.plan_name,
                    "header": func.coalesce(migrations.c.header, insert.excluded.header),
                    "source_provider": insert.excluded.source_provider,
                    "parts": insert.excluded.parts,
                    "vms_total": insert.excluded.vms_total,
                    "parts_seen": seen.op("||")(literal([data.part], JSONB)),
                    # A cutover change that came before this part is newer than the frozen one.
                    "cutover": case(
                        (migrations.c.cutover_revision == 0, insert.excluded.cutover),
                        else_=migrations.c.cutover,
                    ),
                },
            ).returning(migrations.c.cancel_all, migrations.c.cancel_vms)
        )
    ).one()
    canceled = set(row.cancel_vms or [])
    first = steps_of(data.source.type, data.migration_type is MigrationType.WARM)[0].value
    rows = [
        {
            "migration_id": data.migration_id,
            "vm_id": vm.vm_id,
            "plan_id": data.plan_id,
            "source_provider": data.source.id,
            "position": data.part * PART_SPAN + index,
            "spec": vm.model_dump(mode="json"),
            "step": first,
            "cancel_requested": bool(row.cancel_all) or vm.vm_id in canceled,
        }
        for index, vm in enumerate(data.vms)
    ]
    if rows:
        await session.execute(pg_insert(vms).values(rows).on_conflict_do_nothing())


async def accept_cancel(event: env.Envelope[Any], session: AsyncSession) -> int:
    """Mark the VMs to cancel; how many unfinished ones were marked."""
    data: PlanCancelRequested = event.data
    whole = not data.vm_ids
    insert = pg_insert(migrations).values(
        id=data.migration_id,
        plan_id=data.plan_id,
        cancel_all=whole,
        cancel_vms=list(data.vm_ids),
        cancel_reason=data.reason,
    )
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=[migrations.c.id],
            set_={
                "cancel_all": or_(migrations.c.cancel_all, insert.excluded.cancel_all),
                "cancel_vms": migrations.c.cancel_vms.op("||")(insert.excluded.cancel_vms),
                "cancel_reason": insert.excluded.cancel_reason,
            },
        )
    )
    which = vms.c.migration_id == data.migration_id
    if not whole:
        which = and_(which, vms.c.vm_id.in_(data.vm_ids))
    result = await session.execute(
        update(vms)
        .where(and_(which, vms.c.phase.in_(VM_WAITING), ~vms.c.cancel_requested))
        .values(cancel_requested=True, next_run_at=func.now())
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def accept_cutover(event: env.Envelope[Any], session: AsyncSession) -> bool:
    """Keep the new cutover if it is newer than the one known; True if it was.

    The migration's waiting VMs are looked at again at once: a cutover brought forward (or
    set to now) takes effect without waiting for their next poll."""
    data: PlanCutoverChanged = event.data
    insert = pg_insert(migrations).values(
        id=data.migration_id,
        plan_id=data.plan_id,
        cutover=data.cutover,
        cutover_revision=data.revision,
    )
    newer = migrations.c.cutover_revision < insert.excluded.cutover_revision
    result = await session.execute(
        insert.on_conflict_do_update(
            index_elements=[migrations.c.id],
            set_={
                "cutover": insert.excluded.cutover,
                "cutover_revision": insert.excluded.cutover_revision,
            },
            where=newer,
        ).returning(migrations.c.id)
    )
    if result.first() is None:
        return False
    await session.execute(
        update(vms)
        .where(and_(vms.c.migration_id == data.migration_id, vms.c.phase.in_(VM_WAITING)))
        .values(next_run_at=func.now())
    )
    return True
