"""Plan status projected from the orchestrator's and the progress service's events, against
a real PostgreSQL (and NATS): out of order, twice, concurrently, in batches."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.planner import db
from services.planner.following import ProgressFollower
from services.planner.projecting import Projector
from shared import catalog
from shared import envelope as env
from shared import payloads as p
from shared.bus import Bus, Consumer, Subscription
from shared.db.messaging import idempotent
from shared.devservices import DevServices
from shared.settings import HoistSettings
from tests.conftest import eventually
from tests.planner.statusdata import (
    GiB,
    at,
    finished,
    outbox,
    plan_statuses,
    planner_database,
    seed_plan,
    snapshot,
    start,
    step_event,
    vm_story,
)
from tests.shared.test_pipeline import ANCHORS

S, St, Oc = p.Step, p.StepState, p.Outcome
OUTCOMES = (Oc.SUCCEEDED, Oc.FAILED, Oc.CANCELED)


@pytest.fixture(scope="module")
async def status_db(servers: DevServices) -> AsyncIterator[AsyncEngine]:
    async for e in planner_database(servers):
        yield e


async def project(session: AsyncSession, events: list[env.Envelope[Any]]) -> Projector:
    projector = Projector(outbox())
    for e in events:
        await projector.apply(e, session)
    return projector


async def row(session: AsyncSession, table: Any, **key: str) -> dict[str, Any]:
    q = select(table).where(*(table.c[k] == v for k, v in key.items()))
    return dict((await session.execute(q)).mappings().one())


async def started_plan(session: AsyncSession, **kw: Any) -> p.PlanStarted:
    plan = await seed_plan(session)
    return await start(session, plan["plan_id"], **kw)


# --- order and repetition ---------------------------------------------------------------------


async def test_shuffled_and_repeated_events_give_the_in_order_result(
    db_session: AsyncSession,
) -> None:
    async def run(order: str, seed: int) -> dict[str, Any]:
        plan = await started_plan(db_session, vms=3, disks=2)
        events = [e for i, o in enumerate(OUTCOMES) for e in vm_story(plan, i, o)]
        if order == "shuffled":
            rnd = random.Random(seed)
            events += rnd.sample(events, 15)  # redelivered copies
            again = rnd.sample(events, 10)  # the same facts republished under new ids
            events += [e.model_copy(update={"id": f"{e.id}-again"}) for e in again]
            rnd.shuffle(events)
        await project(db_session, events)
        state = await snapshot(db_session, plan.migration_id)
        statuses = await plan_statuses(db_session, plan.plan_id)
        state["last_status"] = {k: v for k, v in statuses[-1].items() if k != "event_id"}
        for c in state["last_status"]["conditions"]:
            c.pop("last_transition", None)
        state["last_status"].pop("plan_id")
        state["last_status"].pop("migration_id")
        return state

    expected = await run("in order", 0)
    assert expected["migration"]["phase"] == "Failed"
    assert expected["plan_phase"] == "Failed"
    assert [v["phase"] for v in expected["vms"]] == ["Succeeded", "Failed", "Canceled"]
    assert [v["step"] for v in expected["vms"]] == ["Cleanup", "VirtualMachineCreation", "Cleanup"]
    for seed in range(6):
        assert await run("shuffled", seed) == expected, f"seed {seed}"


async def test_completed_before_running_keeps_the_start(db_session: AsyncSession) -> None:
    plan = await started_plan(db_session, vms=1, disks=1)
    vm = plan.vms[0].vm_id
    await project(
        db_session,
        [
            step_event(plan, vm, S.INITIALIZE, St.COMPLETED, completed=20, time=20),
            step_event(plan, vm, S.INITIALIZE, St.RUNNING, started=10, time=10),
        ],
    )
    step = await row(
        db_session, db.steps, migration_id=plan.migration_id, vm_id=vm, step="Initialize"
    )
    assert (step["state"], step["started_at"], step["completed_at"]) == (
        "Completed",
        at(10),
        at(20),
    )
    vm_row = await row(db_session, db.vms, migration_id=plan.migration_id, vm_id=vm)
    assert (vm_row["phase"], vm_row["step"], vm_row["started_at"]) == (
        "Running",
        "Initialize",
        at(10),
    )


async def test_a_step_change_alone_moves_the_vm_revision(db_session: AsyncSession) -> None:
    """The VM's revision covers its pipeline: streams and tags that follow it see a step
    change even when the VM's own columns stay as they were."""
    plan = await started_plan(db_session, vms=1, disks=1)
    vm = plan.vms[0].vm_id
    key = {"migration_id": plan.migration_id, "vm_id": vm}
    await project(db_session, [step_event(plan, vm, S.INITIALIZE, St.RUNNING, started=1)])
    before = (await row(db_session, db.vms, **key))["revision"]
    # Initialize completes while PowerOffSource runs: the VM's current step does not move.
    await project(db_session, [step_event(plan, vm, S.POWER_OFF_SOURCE, St.RUNNING, started=2)])
    middle = (await row(db_session, db.vms, **key))["revision"]
    await project(db_session, [step_event(plan, vm, S.INITIALIZE, St.COMPLETED, completed=3)])
    after = await row(db_session, db.vms, **key)
    assert before < middle < after["revision"]
    assert after["step"] == "PowerOffSource"


async def test_the_same_event_twice_changes_nothing_the_second_time(
    db_session: AsyncSession,
) -> None:
    plan = await started_plan(db_session, vms=1, disks=1)
    vm = plan.vms[0].vm_id
    event = step_event(plan, vm, S.INITIALIZE, St.RUNNING, started=10)
    await project(db_session, [event])
    first = await row(db_session, db.vms, migration_id=plan.migration_id, vm_id=vm)
    await project(db_session, [event, event.model_copy(update={"id": "republished"})])
    assert await row(db_session, db.vms, migration_id=plan.migration_id, vm_id=vm) == first


async def test_failed_attempt_then_retry(db_session: AsyncSession) -> None:
    plan = await started_plan(db_session, vms=1, disks=1)
    vm, disk = plan.vms[0].vm_id, plan.vms[0].disks[0].disk_id
    key = {"migration_id": plan.migration_id, "vm_id": vm, "step": "DiskTransfer", "task": disk}
    run = [
        step_event(plan, vm, S.DISK_TRANSFER, St.RUNNING, started=10),
        step_event(plan, vm, S.DISK_TRANSFER, St.RUNNING, task=disk, started=10, progress=(5, GiB)),
        step_event(
            plan, vm, S.DISK_TRANSFER, St.FAILED, task=disk, completed=20, error="Reset", time=20
        ),
    ]
    await project(db_session, run)
    task = await row(db_session, db.tasks, **key)
    assert (task["state"], task["attempt"], task["error"]["reason"]) == ("Failed", 1, "Reset")
    assert (task["started_at"], task["progress_completed"]) == (at(10), 5)
    vm_row = await row(db_session, db.vms, migration_id=plan.migration_id, vm_id=vm)
    assert vm_row["phase"] == "Running", "a failed step is retried; only VmFinished ends a VM"

    retry = step_event(plan, vm, S.DISK_TRANSFER, St.RUNNING, task=disk, attempt=2, started=30)
    stale = step_event(plan, vm, S.DISK_TRANSFER, St.COMPLETED, task=disk, completed=25)
    await project(db_session, [retry, stale])
    task = await row(db_session, db.tasks, **key)
    assert (task["state"], task["attempt"], task["started_at"]) == ("Running", 2, at(30))
    assert (task["completed_at"], task["error"], task["progress_completed"]) == (None, None, 0)

    done = step_event(
        plan, vm, S.DISK_TRANSFER, St.COMPLETED, task=disk, attempt=2, started=30, completed=40
    )
    await project(db_session, [done])
    task = await row(db_session, db.tasks, **key)
    assert (task["state"], task["completed_at"], task["progress_completed"]) == (
        "Completed",
        at(40),
        GiB,
    )
    step = await row(db_session, db.steps, **{k: v for k, v in key.items() if k != "task"})
    assert (step["progress_completed"], step["progress_total"]) == (GiB, GiB)


async def test_outcome_before_the_last_steps_stays_final(db_session: AsyncSession) -> None:
    plan = await started_plan(db_session, vms=1, disks=1)
    vm = plan.vms[0].vm_id
    await project(
        db_session,
        [
            finished(plan, vm, Oc.SUCCEEDED, time=100),
            step_event(plan, vm, S.CLEANUP, St.RUNNING, started=90, time=90),
            step_event(plan, vm, S.CLEANUP, St.FAILED, completed=95, error="Busy", time=95),
            finished(plan, vm, Oc.FAILED, time=110),  # a second outcome is not believed
        ],
    )
    vm_row = await row(db_session, db.vms, migration_id=plan.migration_id, vm_id=vm)
    assert (vm_row["phase"], vm_row["completed_at"], vm_row["step"]) == (
        "Succeeded",
        at(100),
        "Cleanup",
    )
    assert vm_row["target_vm"] == {"namespace": "demo", "name": vm, "uid": None}
    assert vm_row["bytes_done"] == vm_row["bytes_total"] == GiB
    mig = await row(db_session, db.migrations, id=plan.migration_id)
    assert (mig["phase"], mig["vms_succeeded"], mig["completed_at"]) == ("Succeeded", 1, at(100))


async def test_unknown_migrations_and_steps(db_session: AsyncSession) -> None:
    plan = await started_plan(db_session, vms=1, disks=1)
    vm = plan.vms[0].vm_id
    ghost = plan.model_copy(update={"migration_id": "deleted-migration"})
    await project(
        db_session,
        [
            step_event(ghost, vm, S.INITIALIZE, St.RUNNING, started=1),
            finished(ghost, vm, Oc.SUCCEEDED),
            step_event(plan, "vm-not-in-plan", S.INITIALIZE, St.RUNNING, started=1),
            # ConvertOpenstackSnapshot is not in an oVirt pipeline: shown where it runs.
            step_event(plan, vm, S.CONVERT_OPENSTACK_SNAPSHOT, St.SKIPPED, completed=2),
            step_event(plan, vm, S.DISK_TRANSFER, St.RUNNING, task="extra-disk", started=3),
        ],
    )
    steps = (
        await db_session.execute(
            select(db.steps.c.step, db.steps.c.state)
            .where(db.steps.c.migration_id == plan.migration_id)
            .order_by(db.steps.c.position)
        )
    ).all()
    names = [s for s, _ in steps]
    assert names.index("ConvertOpenstackSnapshot") == names.index("PowerOffSource") + 1
    assert dict(steps)["ConvertOpenstackSnapshot"] == "Skipped"
    extra = await row(
        db_session,
        db.tasks,
        migration_id=plan.migration_id,
        vm_id=vm,
        step="DiskTransfer",
        task="extra-disk",
    )
    assert (extra["state"], extra["name"]) == ("Running", "extra-disk")


# --- migration and plan outcome -------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "phase"),
    [
        ((Oc.SUCCEEDED, Oc.SUCCEEDED), "Succeeded"),
        ((Oc.SUCCEEDED, Oc.CANCELED), "Canceled"),
        ((Oc.CANCELED, Oc.FAILED), "Failed"),
    ],
)
async def test_migration_and_plan_end_when_every_vm_is_final(
    db_session: AsyncSession, outcomes: tuple[p.Outcome, ...], phase: str
) -> None:
    plan = await started_plan(db_session, vms=len(outcomes), disks=1)
    first = [finished(plan, plan.vms[0].vm_id, outcomes[0], time=50)]
    await project(db_session, first)
    mig = await row(db_session, db.migrations, id=plan.migration_id)
    assert (mig["phase"], mig["completed_at"]) == ("Running", None)
    [running] = await plan_statuses(db_session, plan.plan_id)
    assert running["phase"] == "Running"
    assert running["conditions"][0]["type"] == "Executing"

    rest = [
        finished(plan, v.vm_id, o, time=60) for v, o in zip(plan.vms[1:], outcomes[1:], strict=True)
    ]
    await project(db_session, rest + rest)
    mig = await row(db_session, db.migrations, id=plan.migration_id)
    counted = (mig["vms_succeeded"], mig["vms_failed"], mig["vms_canceled"])
    assert counted == tuple(sum(1 for o in outcomes if o is x) for x in OUTCOMES)
    assert (mig["phase"], mig["completed_at"]) == (phase, at(60))
    assert (await row(db_session, db.plans, id=plan.plan_id))["phase"] == phase
    statuses = await plan_statuses(db_session, plan.plan_id)
    assert len(statuses) == 2, "one PLAN_STATUS per change, none for the repeats"
    last = statuses[-1]
    assert (last["phase"], last["vms_total"], last["migration_id"]) == (
        phase,
        len(outcomes),
        plan.migration_id,
    )
    assert {c["type"] for c in last["conditions"] if c["status"]} == {phase}


async def test_an_earlier_migration_does_not_move_the_plan(db_session: AsyncSession) -> None:
    seeded = await seed_plan(db_session)
    old = await start(db_session, seeded["plan_id"], vms=1, disks=1)
    new = await start(db_session, seeded["plan_id"], vms=1, disks=1, number=2)
    await project(db_session, [finished(old, old.vms[0].vm_id, Oc.FAILED)])
    assert (await row(db_session, db.migrations, id=old.migration_id))["phase"] == "Failed"
    assert (await row(db_session, db.plans, id=new.plan_id))["phase"] == "Running"
    assert await plan_statuses(db_session, new.plan_id) == []


# --- concurrency --------------------------------------------------------------------------------


async def test_concurrent_events_of_one_migration(status_db: AsyncEngine) -> None:
    """Events handled at once, each in its own transaction (as the consumer does): the row
    locks keep counts and pipelines right."""
    maker = async_sessionmaker(status_db, expire_on_commit=False)
    async with maker() as session, session.begin():
        plan = await started_plan(session, vms=4, disks=2)
        reference = await started_plan(session, vms=4, disks=2)
    outcomes = [Oc.SUCCEEDED, Oc.SUCCEEDED, Oc.FAILED, Oc.CANCELED]
    projector = Projector(outbox(status_db))
    handler = idempotent(maker, db.inbox, "planner-migrations", projector.apply)
    for p_, concurrent in ((reference, False), (plan, True)):
        events = [e for i, o in enumerate(outcomes) for e in vm_story(p_, i, o)]
        random.Random(7).shuffle(events)
        if concurrent:
            for i in range(0, len(events), 16):
                await asyncio.gather(*(handler(e) for e in events[i : i + 16]))
        else:
            for e in sorted(events, key=lambda e: e.time):
                await handler(e)
    async with status_db.connect() as conn:
        got, want = (
            await snapshot(conn, plan.migration_id),
            await snapshot(conn, reference.migration_id),
        )
    assert got == want
    assert got["migration"]["vms_succeeded"] == 2
    assert got["migration"]["phase"] == "Failed"


# --- progress -----------------------------------------------------------------------------------


def disk_sample(
    plan: p.PlanStarted, vm: int, disk: int, done: int, when: float, total: int | None = None
) -> env.Envelope[Any]:
    d = plan.vms[vm].disks[disk]
    data = p.DiskProgress(
        plan_id=plan.plan_id,
        migration_id=plan.migration_id,
        vm_id=plan.vms[vm].vm_id,
        disk_id=d.disk_id,
        bytes_done=done,
        bytes_total=total if total is not None else d.size_bytes,
        percent=min(100.0, done * 100 / d.size_bytes),
        rate_bytes_per_second=1000.5,
        eta_seconds=12.2,
        observed_at=at(when),
    )
    return env.build(catalog.DISK_PROGRESS, data, source="/hoist/progress")


def vm_sample(plan: p.PlanStarted, vm: int, rate: float, when: float) -> env.Envelope[Any]:
    data = p.VmProgress(
        plan_id=plan.plan_id,
        migration_id=plan.migration_id,
        vm_id=plan.vms[vm].vm_id,
        disks_total=2,
        disks_done=0,
        bytes_done=0,
        bytes_total=0,
        percent=0,
        rate_bytes_per_second=rate,
        eta_seconds=99.0,
        observed_at=at(when),
    )
    return env.build(catalog.VM_PROGRESS, data, source="/hoist/progress")


async def test_progress_keeps_the_newest_sample(status_db: AsyncEngine) -> None:
    maker = async_sessionmaker(status_db, expire_on_commit=False)
    async with maker() as session, session.begin():
        plan = await started_plan(session, vms=1, disks=2)
    follower = ProgressFollower(Bus(HoistSettings().nats, source="/t"), status_db)
    for e in (disk_sample(plan, 0, 0, 300, 3), disk_sample(plan, 0, 0, 100, 1)):
        await follower.on_event(e)
    await follower.on_event(disk_sample(plan, 0, 1, 50, 2))
    await follower.on_event(vm_sample(plan, 0, 2048.4, 3))
    assert await follower.flush() == 4
    await follower.on_event(disk_sample(plan, 0, 0, 200, 2))  # older than what is stored
    await follower.flush()
    async with maker() as session:
        state = await snapshot(session, plan.migration_id)
    transfer = [t for t in state["tasks"] if t["step"] == "DiskTransfer"]
    assert [(t["progress_completed"], t["observed_at"]) for t in transfer] == [
        (300, at(3)),
        (50, at(2)),
    ]
    assert (transfer[0]["rate"], transfer[0]["eta_seconds"]) == (1000, 13)
    [step] = [s for s in state["steps"] if s["step"] == "DiskTransfer"]
    assert (step["progress_completed"], step["progress_total"]) == (350, 3 * GiB)
    [vm] = state["vms"]
    assert (vm["bytes_done"], vm["bytes_total"], vm["rate"], vm["eta_seconds"]) == (
        350,
        3 * GiB,
        2048,
        99,
    )


async def test_progress_statements_are_sent_as_anchored(status_db: AsyncEngine) -> None:
    """The follower's writes reach PostgreSQL with their step states, step and phases
    inline, exactly as the anchors of ``tests/shared/test_pipeline.py`` spell them (the
    text they had when those were literals in the SQL)."""
    maker = async_sessionmaker(status_db, expire_on_commit=False)
    async with maker() as session, session.begin():
        plan = await started_plan(session, vms=1, disks=1)
    follower = ProgressFollower(Bus(HoistSettings().nats, source="/t"), status_db)
    await follower.on_event(disk_sample(plan, 0, 0, 100, 1))
    await follower.on_event(vm_sample(plan, 0, 10.0, 1))
    sent: list[str] = []

    def capture(_c: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(" ".join(statement.split()))

    event.listen(status_db.sync_engine, "before_cursor_execute", capture)
    try:
        assert await follower.flush() == 4
    finally:
        event.remove(status_db.sync_engine, "before_cursor_execute", capture)
    for ref in (
        "services.planner.following:UPDATE_TASKS",
        "services.planner.statusrows:RESUM_STEPS",
        "services.planner.following:UPDATE_VMS",
    ):
        assert " ".join(ANCHORS[ref].split()) in sent, ref


async def test_progress_counts_in_the_disks_own_bytes(status_db: AsyncEngine) -> None:
    """A populator copying an image smaller than its disk (OpenStack: whole GiB) reports
    the image's bytes; the task shows the same fraction of the disk's size, so its bar ends
    where the step's completion puts it instead of jumping."""
    maker = async_sessionmaker(status_db, expire_on_commit=False)
    async with maker() as session, session.begin():
        plan = await started_plan(session, vms=1, disks=1)
    size = plan.vms[0].disks[0].size_bytes
    follower = ProgressFollower(Bus(HoistSettings().nats, source="/t"), status_db)
    await follower.on_event(disk_sample(plan, 0, 0, 16 << 20, 3, total=64 << 20))
    await follower.flush()
    async with maker() as session:
        state = await snapshot(session, plan.migration_id)
    [task] = [t for t in state["tasks"] if t["step"] == "DiskTransfer"]
    assert (task["progress_completed"], task["progress_total"]) == (size // 4, size)
    [vm] = state["vms"]
    assert (vm["bytes_done"], vm["bytes_total"]) == (size // 4, size)


async def test_progress_of_a_finished_task_or_vm(status_db: AsyncEngine) -> None:
    maker = async_sessionmaker(status_db, expire_on_commit=False)
    async with maker() as session, session.begin():
        plan = await started_plan(session, vms=2, disks=1)
        disk = plan.vms[0].disks[0].disk_id
        await project(
            session,
            [
                step_event(plan, "vm-0000", S.DISK_TRANSFER, St.COMPLETED, task=disk, completed=5),
                finished(plan, "vm-0001", Oc.FAILED, time=5),
            ],
        )
        await session.execute(  # a total the planner did not know
            update(db.tasks)
            .where(db.tasks.c.migration_id == plan.migration_id, db.tasks.c.task == disk)
            .values(progress_total=0, progress_completed=0)
        )
    follower = ProgressFollower(Bus(HoistSettings().nats, source="/t"), status_db)
    for e in (
        disk_sample(plan, 0, 0, 10, 9, total=777),
        disk_sample(plan, 1, 0, 10, 9),
        vm_sample(plan, 1, 5.0, 9),
    ):
        await follower.on_event(e)
    await follower.flush()
    async with maker() as session:
        state = await snapshot(session, plan.migration_id)
    t0, t1 = (t for t in state["tasks"] if t["step"] == "DiskTransfer")
    assert (t0["state"], t0["progress_completed"], t0["progress_total"]) == ("Completed", 777, 777)
    assert t0["observed_at"] is None, "a final task takes nothing but a missing total"
    assert t1["progress_completed"] == 10
    failed = state["vms"][1]
    assert (failed["phase"], failed["rate"], failed["bytes_done"]) == ("Failed", None, 10)


async def test_two_thousand_disks_in_one_flush(status_db: AsyncEngine) -> None:
    maker = async_sessionmaker(status_db, expire_on_commit=False)
    async with maker() as session, session.begin():
        plan = await started_plan(session, vms=500, disks=4)
    follower = ProgressFollower(Bus(HoistSettings().nats, source="/t"), status_db)
    for rnd in range(3):  # three rounds of samples between two flushes
        for v in range(500):
            for d in range(4):
                await follower.on_event(disk_sample(plan, v, d, (rnd + 1) * (v + d), rnd))
    assert await follower.flush() == 4
    assert follower.statements == 4
    async with status_db.connect() as conn:
        vms = (
            await conn.execute(
                select(db.vms.c.vm_id, db.vms.c.bytes_done, db.vms.c.revision)
                .where(db.vms.c.migration_id == plan.migration_id)
                .order_by(db.vms.c.vm_id)
            )
        ).all()
    assert [b for _, b, _ in vms] == [3 * (4 * v + 6) for v in range(500)]
    assert len({r for _, _, r in vms}) == 500, "each changed VM takes a revision of its own"


# --- through NATS -------------------------------------------------------------------------------


async def test_events_from_nats_are_projected(
    status_db: AsyncEngine, bus: Bus, settings: HoistSettings
) -> None:
    maker = async_sessionmaker(status_db, expire_on_commit=False)
    async with maker() as session, session.begin():
        plan = await started_plan(session, vms=1, disks=1)
    projector = Projector(outbox(status_db))
    consumer = Consumer(
        bus,
        Subscription(
            name="planner-migrations",
            events=(catalog.VM_STEP_CHANGED, catalog.VM_FINISHED),
            description="test",
            handler=idempotent(maker, db.inbox, "planner-migrations", projector.apply),
        ),
        settings.consumer,
    )
    await consumer.declare()
    consumer.start()
    follower = ProgressFollower(bus, status_db, interval=0.05)
    await follower.start()
    vm, disk = plan.vms[0].vm_id, plan.vms[0].disks[0].disk_id
    try:
        running = step_event(plan, vm, S.DISK_TRANSFER, St.RUNNING, task=disk, started=1)
        await bus.publish_envelope(running)
        await bus.publish_envelope(running)  # JetStream drops the copy, the inbox would too
        await bus.publish(catalog.DISK_PROGRESS, disk_sample(plan, 0, 0, 4096, 2).data)

        async def transferred() -> bool:
            async with status_db.connect() as conn:
                s = await snapshot(conn, plan.migration_id)
            return bool(s["vms"][0]["bytes_done"] == 4096 and s["vms"][0]["phase"] == "Running")

        await eventually(transferred, what="step and progress projected")
        await bus.publish_envelope(finished(plan, vm, Oc.SUCCEEDED, time=3))

        async def done() -> bool:
            async with status_db.connect() as conn:
                phase = (await snapshot(conn, plan.migration_id))["plan_phase"]
            return bool(phase == "Succeeded")

        await eventually(done, what="the plan to succeed")
    finally:
        await follower.stop()
        await consumer.stop(1)
    async with status_db.connect() as conn:
        statuses = await plan_statuses(conn, plan.plan_id)
    assert [s["phase"] for s in statuses] == ["Succeeded"]
