"""Data for the plan-status tests: a seeded plan and migration, realistic orchestrator event
sequences, and a comparable snapshot of what the projector stored."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from services.planner import db
from services.planner.launching import next_revision, record_migration
from shared import catalog
from shared import envelope as env
from shared import payloads as p
from shared.bus import Bus
from shared.db import migrating
from shared.db.messaging import Outbox
from shared.devservices import DevServices
from shared.settings import NatsSettings, OutboxSettings
from tests.conftest import create_database, drop_database

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
GiB = 1 << 30

Session = AsyncSession | AsyncConnection


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def outbox(engine: Any = None) -> Outbox:
    """An outbox to write PLAN_STATUS into (never relayed unless a test runs it)."""
    bus = Bus(NatsSettings(), source="/hoist/planner")
    return Outbox(engine, db.outbox, bus, OutboxSettings())


async def planner_database(servers: DevServices) -> AsyncIterator[AsyncEngine]:
    """A database of one test module with the planner's schema: its commits and outbox rows
    are seen by no other module (a planner started elsewhere would relay them)."""
    import services.planner

    url = await create_database(servers.database_url)
    engine = create_async_engine(url)
    spec = services.planner.SPEC
    await migrating.upgrade(engine, spec.migrations, spec.schema)
    yield engine
    await engine.dispose()
    await drop_database(url)


def frozen(
    plan_id: str, migration_id: str, vms: int, disks: int, source: str = "ovirt"
) -> p.PlanStarted:
    def ref(kind: str) -> p.ProviderRef:
        return p.ProviderRef(
            id=str(uuid.uuid4()),
            type=p.ProviderType(kind),
            url="https://example.invalid",
            secret=p.ResourceRef(namespace="hoist", name=f"{kind}-secret"),
        )

    return p.PlanStarted(
        plan_id=plan_id,
        migration_id=migration_id,
        plan_name="status-test",
        source=ref(source),
        target=ref("kubevirt"),
        target_namespace="demo",
        vms=[
            p.PlannedVm(
                vm_id=f"vm-{i:04d}",
                name=f"VM {i}",
                target_name=f"vm-{i:04d}",
                disks=[
                    p.PlannedDisk(
                        disk_id=f"disk-{i:04d}-{d}",
                        name=f"disk{d}",
                        size_bytes=(d + 1) * GiB,
                        pvc_name=f"vm-{i:04d}-disk{d}",
                        storage_class="standard",
                        volume_mode="Filesystem",
                        access_mode="ReadWriteOnce",
                    )
                    for d in range(disks)
                ],
            )
            for i in range(vms)
        ],
    )


async def seed_plan(session: AsyncSession, name: str | None = None) -> dict[str, Any]:
    """A plan row (with the maps its foreign keys need), not started."""
    ids = {k: str(uuid.uuid4()) for k in ("plan", "nmap", "smap", "src", "dst")}
    rev = await next_revision(session)
    for table, key in ((db.network_maps, "nmap"), (db.storage_maps, "smap")):
        await session.execute(
            insert(table).values(
                id=ids[key],
                name=f"{key}-{ids[key][:8]}",
                source_provider=ids["src"],
                target_provider=ids["dst"],
                revision=rev,
            )
        )
    plan_name = name or f"plan-{ids['plan'][:8]}"
    await session.execute(
        insert(db.plans).values(
            id=ids["plan"],
            name=plan_name,
            source_provider=ids["src"],
            target_provider=ids["dst"],
            target_namespace="demo",
            network_map=ids["nmap"],
            storage_map=ids["smap"],
            phase="Ready",
            revision=rev,
        )
    )
    return {"plan_id": ids["plan"], "name": plan_name}


async def start(
    session: AsyncSession,
    plan_id: str,
    *,
    vms: int = 3,
    disks: int = 2,
    number: int = 1,
    source: str = "ovirt",
) -> p.PlanStarted:
    """What the lead's start does to the status tables: a migration, the plan Running."""
    plan = frozen(plan_id, str(uuid.uuid4()), vms, disks, source)
    await record_migration(session, plan, number=number)
    await session.execute(
        update(db.plans)
        .where(db.plans.c.id == plan_id)
        .values(phase="Running", migration_id=plan.migration_id)
    )
    return plan


def step_event(
    plan: p.PlanStarted,
    vm: str,
    step: p.Step,
    state: p.StepState,
    *,
    task: str | None = None,
    attempt: int = 1,
    started: float | None = None,
    completed: float | None = None,
    progress: tuple[int, int] | None = None,
    error: str | None = None,
    time: float = 0.0,
    detail: dict[str, object] | None = None,
) -> env.Envelope[Any]:
    data = p.VmStepChanged(
        plan_id=plan.plan_id,
        migration_id=plan.migration_id,
        vm_id=vm,
        step=step,
        state=state,
        task=task,
        attempt=attempt,
        started_at=at(started) if started is not None else None,
        completed_at=at(completed) if completed is not None else None,
        progress=p.StepProgress(completed=progress[0], total=progress[1]) if progress else None,
        error=p.ErrorInfo(reason=error, message=f"{error}!", permanent=False) if error else None,
        detail=detail or {},
    )
    return env.build(catalog.VM_STEP_CHANGED, data, source="/hoist/orchestrator", time=at(time))


def finished(
    plan: p.PlanStarted, vm: str, outcome: p.Outcome, *, time: float = 0.0
) -> env.Envelope[Any]:
    data = p.VmFinished(
        plan_id=plan.plan_id,
        migration_id=plan.migration_id,
        vm_id=vm,
        outcome=outcome,
        target_vm=p.ResourceRef(namespace="demo", name=vm) if outcome == "Succeeded" else None,
        error=p.ErrorInfo(reason="CopyFailed", message="no", permanent=True)
        if outcome == "Failed"
        else None,
    )
    return env.build(catalog.VM_FINISHED, data, source="/hoist/orchestrator", time=at(time))


def vm_story(plan: p.PlanStarted, index: int, outcome: p.Outcome) -> list[env.Envelope[Any]]:
    """Every event the orchestrator sends for one VM, in order: each step Running then
    Completed, a task per disk, the first disk's transfer failing once and retried, the
    transfer step announced twice (later the second time)."""
    S, St = p.Step, p.StepState
    vm = plan.vms[index]
    t = index * 1000.0
    out: list[env.Envelope[Any]] = []

    def ev(step: p.Step, state: p.StepState, **kw: Any) -> None:
        out.append(step_event(plan, vm.vm_id, step, state, time=kw.pop("time", t), **kw))

    steps = [S.INITIALIZE, S.POWER_OFF_SOURCE, S.DISK_ALLOCATION, S.DISK_TRANSFER]
    for step in steps:
        t += 10
        begun = t
        ev(step, St.RUNNING, started=begun)
        if step is S.DISK_TRANSFER:  # an orchestrator restarted: the step announced again
            ev(step, St.RUNNING, started=begun + 3)
        if step in (S.DISK_ALLOCATION, S.DISK_TRANSFER):
            for n, d in enumerate(vm.disks):
                size = d.size_bytes if step is S.DISK_TRANSFER else 1
                t += 5
                ev(step, St.RUNNING, task=d.disk_id, started=t)
                if step is S.DISK_TRANSFER and n == 0:
                    t += 5
                    ev(step, St.RUNNING, task=d.disk_id, started=t - 5, progress=(size // 2, size))
                    ev(step, St.FAILED, task=d.disk_id, started=t - 5, completed=t, error="Reset")
                    t += 5
                    ev(step, St.RUNNING, task=d.disk_id, attempt=2, started=t)
                    attempt = 2
                else:
                    attempt = 1
                t += 5
                ev(step, St.COMPLETED, task=d.disk_id, attempt=attempt, started=t - 5, completed=t)
        t += 5
        ev(step, St.COMPLETED, started=begun, completed=t)
    t += 10
    if outcome is p.Outcome.SUCCEEDED:
        ev(S.VIRTUAL_MACHINE_CREATION, St.RUNNING, started=t)
        ev(S.VIRTUAL_MACHINE_CREATION, St.COMPLETED, started=t, completed=t + 3)
    elif outcome is p.Outcome.FAILED:
        ev(S.VIRTUAL_MACHINE_CREATION, St.RUNNING, started=t)
        ev(S.VIRTUAL_MACHINE_CREATION, St.FAILED, started=t, completed=t + 3, error="Quota")
    else:
        ev(S.VIRTUAL_MACHINE_CREATION, St.CANCELED, completed=t + 3)
    ev(S.CLEANUP, St.RUNNING, started=t + 5)
    ev(S.CLEANUP, St.COMPLETED, started=t + 5, completed=t + 8)
    out.append(finished(plan, vm.vm_id, outcome, time=t + 9))
    return out


# --- what was stored ------------------------------------------------------------------------

_VOLATILE = {"revision", "updated_at", "migration_id", "plan_id", "id"}


def _clean(row: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(row).items() if k not in _VOLATILE}


async def snapshot(session: Session, migration_id: str) -> dict[str, Any]:
    """Everything the projector stored for a migration, without ids and revisions (so two
    migrations given the same events compare equal)."""
    out: dict[str, Any] = {}
    for name, table, order in (
        ("vms", db.vms, ("vm_id",)),
        ("steps", db.steps, ("vm_id", "step")),
        ("tasks", db.tasks, ("vm_id", "step", "task")),
    ):
        q = select(table).where(table.c.migration_id == migration_id)
        rows = (await session.execute(q.order_by(*(table.c[c] for c in order)))).mappings()
        out[name] = [_clean(r) for r in rows]
    m = db.migrations
    mig = (await session.execute(select(m).where(m.c.id == migration_id))).mappings().one()
    out["migration"] = {k: v for k, v in _clean(mig).items() if k not in ("frozen", "started_at")}
    plan = await session.scalar(select(db.plans.c.phase).where(db.plans.c.id == mig["plan_id"]))
    out["plan_phase"] = plan
    return out


async def plan_statuses(session: Session, plan_id: str) -> list[dict[str, Any]]:
    """The PLAN_STATUS payloads in the outbox for a plan, in the order they were written."""
    o = db.outbox
    rows = await session.execute(
        select(o.c.event_id, o.c.envelope)
        .where(o.c.event_type == catalog.PLAN_STATUS.ce_type)
        .order_by(o.c.seq)
    )
    return [
        {"event_id": r.event_id, **r.envelope["data"]}
        for r in rows
        if r.envelope["data"]["plan_id"] == plan_id
    ]
