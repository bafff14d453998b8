"""Starting a plan: the migration row, its VMs' pipelines, and the frozen plan on JetStream;
canceling it, and moving its cutover while it runs.

A start (or re-run) is one transaction: a ``migrations`` row numbered after the plan's last,
one ``vms`` row per VM to migrate with its pipeline (``steps``, Pending) and a task per disk
(DiskAllocation and DiskTransfer), and the ``PLAN_STARTED`` event in the outbox. So the
status API shows the whole pipeline from the first moment, and a crash either loses the
start entirely (the user retries) or keeps all of it (the outbox publishes it).

The cutover (no source VM powered off before it) is frozen into ``PLAN_STARTED`` like the
rest, but it is the one thing a user may change while the plan runs: a downtime window
moves. ``set_cutover`` writes the plan and, while a migration runs, ``PLAN_CUTOVER_CHANGED``
in the same transaction, numbered by the plan's ``cutover_revision`` so the orchestrator
keeps the newest change whatever order they arrive in.

In a disk's journey: the VM's steps (the disk is a task of DiskAllocation and DiskTransfer)
are its source's pipeline as ``shared/pipeline.py`` declares it for every service, and the
frozen plan leaves through the outbox as ``plan.started``, which the orchestrator consumes.

Next: services/orchestrator/events.py
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func, insert, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.planner import db, plans
from services.planner.db import PlanRow, plan_row
from services.planner.errors import Conflict, Invalid, NotStartable
from services.planner.inventoryclient import InventoryClient
from services.planner.model import CancelRequest, CutoverRequest
from shared import catalog
from shared.db.messaging import Outbox
from shared.payloads import (
    MigrationType,
    PlanCancelRequested,
    PlanCutoverChanged,
    PlannedVm,
    PlanStarted,
    PowerState,
    Step,
    StepState,
)
from shared.pipeline import PER_DISK_STEPS, PLAN_VM_FINAL, POSITION, PlanVmPhase, steps_of
from shared.settings import PlannerSettings

log = logging.getLogger("hoist.planner.launching")


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
    ``skipped`` counts VMs an earlier migration of the plan already migrated. The steps are
    the source's in ``shared.pipeline``, the list the orchestrator runs: a source without a
    pipeline is a ``ValueError`` here, never another source's steps shown for it.
    """
    rev = revision if revision is not None else await next_revision(session)
    now = datetime.now(UTC)
    await session.execute(
        insert(db.migrations).values(
            id=frozen.migration_id,
            plan_id=frozen.plan_id,
            number=number,
            phase=plans.RUNNING,  # a migration's phases are those it gives its plan
            frozen=sa.cast(sa.literal(frozen_record(frozen), sa.Text), JSONB),
            vms_total=len(frozen.vms),
            vms_skipped=skipped,
            started_at=now,
            revision=rev,
        )
    )
    if not frozen.vms:
        return
    mid, pending = frozen.migration_id, StepState.PENDING.value
    vm_rows = [
        (mid, vm.vm_id, frozen.plan_id, vm.name, vm.target_name, PlanVmPhase.PENDING.value,
         sum(d.size_bytes for d in vm.disks), rev)
        for vm in frozen.vms
    ]  # fmt: skip
    warm = frozen.migration_type is MigrationType.WARM
    step_rows: list[tuple[Any, ...]] = []
    task_rows: list[tuple[Any, ...]] = []
    for vm in frozen.vms:
        # Per VM: ConvertGuest is a VM's option, and only a VM with it has the step.
        for step in steps_of(
            frozen.source.type, warm, vm.convert_guest, [h.step for h in vm.hooks]
        ):
            per_disk = step in PER_DISK_STEPS
            total = _step_total(step, (d.size_bytes for d in vm.disks)) if per_disk else 0
            step_rows.append((mid, vm.vm_id, step.value, POSITION[step.value], pending, total))
            if per_disk:
                task_rows.extend(
                    (mid, vm.vm_id, step.value, d.disk_id, d.name or d.pvc_name, pending,
                     d.size_bytes if step is Step.DISK_TRANSFER else 1)
                    for d in vm.disks
                )  # fmt: skip
    await _copy(session, db.vms, VM_COLUMNS, vm_rows)
    await _copy(session, db.steps, STEP_COLUMNS, step_rows)
    await _copy(session, db.tasks, TASK_COLUMNS, task_rows)


def frozen_record(frozen: PlanStarted) -> str:
    """What a migration row keeps of its frozen plan: all of it but each VM's ``detail`` and
    ``source`` (its source configuration, whole: two thirds of the bytes, kept by the
    inventory, and published in ``plan.started``), as JSON made by pydantic at once. Nothing
    reads it back; whole, 10,000 VMs made 28 MB of JSONB that PostgreSQL took seconds to
    parse and compress inside the start's transaction."""
    return frozen.model_dump_json(exclude={"vms": {"__all__": {"detail", "source"}}})


#: The columns ``record_migration`` fills; the others take their defaults.
VM_COLUMNS = (
    "migration_id", "vm_id", "plan_id", "name", "target_name", "phase", "bytes_total",
    "revision",
)  # fmt: skip
STEP_COLUMNS = ("migration_id", "vm_id", "step", "position", "state", "progress_total")
TASK_COLUMNS = ("migration_id", "vm_id", "step", "task", "name", "state", "progress_total")


async def _copy(
    session: AsyncSession, table: Any, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """``COPY`` the rows into ``table``, in ``session``'s transaction: a plan of 10,000 VMs
    has some 100,000 steps and tasks, which multi-row ``INSERT``s built by SQLAlchemy took
    seconds of the planner's CPU to write (and asyncpg caps a statement's parameters)."""
    raw = await (await session.connection()).get_raw_connection()
    driver: Any = raw.driver_connection  # asyncpg's, under SQLAlchemy's adapter
    await driver.copy_records_to_table(
        table.name, schema_name=table.schema, columns=list(columns), records=rows
    )


async def next_revision(session: AsyncSession) -> int:
    return int((await session.execute(select(db.revision_seq.next_value()))).scalar_one())


def _step_total(step: Step, sizes: Iterable[int]) -> int:
    """DiskTransfer counts bytes, DiskAllocation counts disks."""
    values = list(sizes)
    return sum(values) if step is Step.DISK_TRANSFER else len(values)


# --- start, re-run, cancel ------------------------------------------------------------------


async def start(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    inv: InventoryClient,
    settings: PlannerSettings,
    ref: str,
) -> tuple[PlanRow, Any]:
    """Validate the plan again and, if nothing is an error, start its next migration.

    A re-run is the same call on a plan whose last migration ended: VMs an earlier
    migration migrated are left out (counted as skipped), the others are tried again.
    Returns the plan and the new migration rows."""
    async with engine.connect() as conn:
        row = await plans.find(conn, ref)
        _startable(row)
        plan: dict[str, Any] = dict(row)
        res = await plans.check(conn, inv, plan)
    outcome = plans.outcome(plan, res, keep_phase=False)
    if not res.ok:
        async with engine.begin() as conn:
            await conn.execute(
                sa.update(db.plans)
                .where(db.plans.c.id == plan["id"], db.plans.c.revision == plan["revision"])
                .values(**outcome, revision=db.revision_seq.next_value())
            )
        errors = [p.as_dict() for p in res.problems if p.severity == "error"]
        raise NotStartable(
            f"the plan has {len(errors)} problem(s) that block a start; fix them and start again",
            [p.as_dict() for p in res.problems],
        )
    if not res.vms:
        raise Conflict(
            ["path", "plan"], "every VM of the plan was migrated by an earlier run: nothing to do"
        )
    assert res.source is not None
    assert res.target is not None
    limits = plans.limits_of(plan, settings)
    async with sessionmaker() as session, session.begin():
        locked = plan_row(
            (
                await session.execute(
                    select(db.plans).where(db.plans.c.id == plan["id"]).with_for_update()
                )
            )
            .mappings()
            .one()
        )
        _startable(locked)
        if definition(locked) != definition(plan):
            raise Conflict(["path", "plan"], "the plan changed while starting; start it again")
        number = (
            await session.scalar(
                select(func.coalesce(func.max(db.migrations.c.number), 0)).where(
                    db.migrations.c.plan_id == plan["id"]
                )
            )
            or 0
        ) + 1
        frozen = PlanStarted(
            plan_id=plan["id"],
            migration_id=str(uuid.uuid4()),
            plan_name=plan["name"],
            source=res.source,
            target=res.target,
            target_namespace=plan["target_namespace"],
            migration_type=MigrationType(plan["migration_type"]),
            target_power_state=PowerState(plan["target_power_state"]),
            transfer_network=_transfer_network(plan),
            max_disks_in_flight=limits["maxDisksInFlight"],
            max_disks_in_flight_per_source=limits["maxDisksInFlightPerSource"],
            max_vms_in_flight=limits["maxVmsInFlight"],
            # From the locked row: a cutover changed after this start committed is then
            # either in here or, the plan Running, told to the migration as a change.
            cutover=locked["cutover"],
            # Frozen for a cold plan too (the orchestrator ignores it there): what the plan
            # says, rather than a rule here about when it matters.
            precopy_interval_minutes=plan["precopy_interval_minutes"],
            vms=res.vms,
        )
        rev = await next_revision(session)
        await record_migration(
            session,
            frozen,
            number=number,
            skipped=len([v for v in plan["vms"] if v.get("id")]) - len(res.vms),
            revision=rev,
        )
        outcome.update(phase=plans.RUNNING, migration_id=frozen.migration_id, revision=rev)
        updated = plan_row(
            (
                await session.execute(
                    sa.update(db.plans)
                    .where(db.plans.c.id == plan["id"])
                    .values(**outcome, updated_at=datetime.now(UTC))
                    .returning(db.plans)
                )
            )
            .mappings()
            .one()
        )
        for part in split(frozen, settings.started_event_bytes):
            await outbox.add(
                session,
                catalog.PLAN_STARTED,
                part,
                event_id=f"plan-started-{frozen.migration_id}-{part.part}",
            )
        migration = (
            (
                await session.execute(
                    select(db.migrations).where(db.migrations.c.id == frozen.migration_id)
                )
            )
            .mappings()
            .one()
        )
    log.info(
        "plan %s started: migration %d (%s) with %d VMs",
        plan["name"],
        number,
        frozen.migration_id,
        len(frozen.vms),
    )
    return updated, migration


#: What a user defines; a revalidation meanwhile changes other columns, and must not make
#: a start fail (a busy provider marks its plans stale every few seconds).
DEFINITION = (
    "source_provider", "target_provider", "target_namespace", "network_map", "storage_map",
    "migration_type", "target_power_state", "transfer_network", "naming", "limits", "vms",
    "archived", "precopy_interval_minutes", "convert_guest",
)  # fmt: skip


def definition(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The plan as its user defined it (VM names the inventory filled in aside)."""
    vms = [{k: v for k, v in vm.items() if k != "name"} for vm in row["vms"]]
    return tuple(vms if k == "vms" else row[k] for k in DEFINITION)


def split(frozen: PlanStarted, budget: int) -> list[PlanStarted]:
    """The frozen plan in parts of at most about ``budget`` bytes of JSON each (one part if
    it fits). VMs are packed in order; a VM larger than the budget on its own goes alone
    (its part may then exceed the budget: one VM is never split)."""
    header = len(frozen.model_copy(update={"vms": []}).model_dump_json()) + 512
    groups: list[list[PlannedVm]] = [[]]
    used = header
    for vm in frozen.vms:
        size = len(vm.model_dump_json()) + 1
        if groups[-1] and used + size > budget:
            groups.append([])
            used = header
        groups[-1].append(vm)
        used += size
    total = len(frozen.vms)
    return [
        frozen.model_copy(update={"vms": g, "part": i, "parts": len(groups), "vms_total": total})
        for i, g in enumerate(groups, start=1)
    ]


def _transfer_network(plan: dict[str, Any]) -> str | None:
    ref = plan["transfer_network"]
    if not ref:
        return None
    return ref if "/" in ref else f"{plan['target_namespace']}/{ref}"


def _startable(row: PlanRow) -> None:
    if row["archived"]:
        raise Conflict(["path", "plan"], "the plan is archived; unarchive it to start it")
    if row["phase"] == plans.RUNNING:
        raise Conflict(
            ["path", "plan"],
            f"the plan is running (migration {row['migration_id']}); wait for it or cancel it",
        )


async def cancel(
    sessionmaker: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    ref: str,
    body: CancelRequest,
) -> dict[str, Any]:
    """Ask the orchestrator to cancel the running migration, or chosen VMs of it.

    The VMs' status changes when the orchestrator reports them Canceled (it stops their
    steps and deletes what they created); until then they show ``cancelRequested``."""
    async with sessionmaker() as session, session.begin():
        row = await plans.find(await session.connection(), ref, lock=True)
        if row["phase"] != plans.RUNNING or row["migration_id"] is None:
            raise Conflict(["path", "plan"], f"the plan is not running (it is {row['phase']})")
        mid = row["migration_id"]
        v = db.vms
        vms = {
            r["vm_id"]: r["phase"]
            for r in (
                await session.execute(select(v.c.vm_id, v.c.phase).where(v.c.migration_id == mid))
            ).mappings()
        }
        wanted = list(dict.fromkeys(body.vms)) if body.vms else list(vms)
        unknown: list[tuple[list[str | int], str, str]] = [
            (["body", "vms", i], "not_found", f"VM {w!r} is not in the running migration")
            for i, w in enumerate(wanted)
            if w not in vms
        ]
        if unknown:
            raise Invalid(unknown)
        final = [w for w in wanted if vms[w] in PLAN_VM_FINAL]
        active = [w for w in wanted if vms[w] not in PLAN_VM_FINAL]
        if active:
            # Lock the VM rows in key order first, as the projector and the progress
            # follower do, so a cancel and a flush never wait on each other in a cycle.
            await session.execute(
                select(v.c.vm_id)
                .where(v.c.migration_id == mid, v.c.vm_id.in_(active))
                .order_by(v.c.vm_id)
                .with_for_update()
            )
            rev = await next_revision(session)
            await session.execute(
                sa.update(v)
                .where(v.c.migration_id == mid, v.c.vm_id.in_(active))
                .values(cancel_requested=True, revision=rev, updated_at=datetime.now(UTC))
            )
            if not body.vms:
                await session.execute(
                    sa.update(db.migrations)
                    .where(db.migrations.c.id == mid)
                    .values(cancel_requested=True, revision=rev)
                )
            await outbox.add(
                session,
                catalog.PLAN_CANCEL_REQUESTED,
                PlanCancelRequested(
                    plan_id=row["id"],
                    migration_id=mid,
                    vm_ids=[] if not body.vms else active,
                    reason=body.reason,
                ),
            )
    return {"migrationId": mid, "canceling": active, "alreadyFinished": final}


async def set_cutover(
    sessionmaker: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    ref: str,
    body: CutoverRequest,
) -> PlanRow:
    """Set (or clear: ``None``, at once) the plan's cutover time; returns the plan row.

    Before a start (or after a migration ended) it is a change of the plan for its next
    start. While a migration runs, the orchestrator is told too: ``PLAN_CUTOVER_CHANGED``
    goes into the outbox in this transaction, so the plan and the event are written
    together or not at all. The same time again changes nothing and tells nobody."""
    async with sessionmaker() as session, session.begin():
        row = await plans.find(await session.connection(), ref, lock=True)
        if row["archived"]:
            raise Conflict(["path", "plan"], "the plan is archived; unarchive it to change it")
        if row["cutover"] == body.at:
            return row
        revision = int(row["cutover_revision"]) + 1
        updated = plan_row(
            (
                await session.execute(
                    sa.update(db.plans)
                    .where(db.plans.c.id == row["id"])
                    .values(
                        cutover=body.at,
                        cutover_revision=revision,
                        revision=db.revision_seq.next_value(),
                        updated_at=datetime.now(UTC),
                    )
                    .returning(db.plans)
                )
            )
            .mappings()
            .one()
        )
        mid = row["migration_id"]
        if row["phase"] == plans.RUNNING and mid is not None:
            await outbox.add(
                session,
                catalog.PLAN_CUTOVER_CHANGED,
                PlanCutoverChanged(
                    plan_id=row["id"], migration_id=mid, cutover=body.at, revision=revision
                ),
                event_id=f"plan-cutover-{row['id']}-{revision}",
            )
    when = body.at.isoformat() if body.at else "at once"
    log.info("plan %s: cutover %s (revision %d)", row["name"], when, revision)
    return updated
