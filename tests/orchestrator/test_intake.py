"""Plan parts and cancels become VM rows exactly as planned; admission keeps the limits.

On a real PostgreSQL, each test in a transaction that is rolled back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator import admission, intake
from services.orchestrator.db import migrations, vms
from shared import catalog
from shared import envelope as env
from shared import payloads as p
from tests.orchestrator.plans import disk, provider, started, vm


def envelope(spec: catalog.EventSpec[Any], data: Any) -> env.Envelope[Any]:
    return env.build(spec, data, source="/test")


def some_vms(n: int, disks: int = 1) -> list[p.PlannedVm]:
    return [
        vm(str(uuid.uuid4()), [disk(str(uuid.uuid4())) for _ in range(disks)]) for _ in range(n)
    ]


async def rows(session: AsyncSession, migration_id: str) -> list[Any]:
    result = await session.execute(
        select(vms).where(vms.c.migration_id == migration_id).order_by(vms.c.position)
    )
    return list(result)


async def test_parts_in_any_order_twice_make_each_vm_once(db_session: AsyncSession) -> None:
    members = some_vms(5)
    whole = started(members, parts=3, vms_total=5)
    parts = [
        whole.model_copy(update={"part": 2, "vms": members[2:4]}),
        whole.model_copy(update={"part": 1, "vms": members[:2]}),
        whole.model_copy(update={"part": 2, "vms": members[2:4]}),  # redelivered
        whole.model_copy(update={"part": 3, "vms": members[4:]}),
    ]
    for part in parts:
        await intake.accept_part(envelope(catalog.PLAN_STARTED, part), db_session)
    got = await rows(db_session, whole.migration_id)
    assert [r.vm_id for r in got] == [m.vm_id for m in members]  # the plan's order
    assert {r.step for r in got} == {"Initialize"}
    assert {r.phase for r in got} == {"Queued"}
    m = (
        await db_session.execute(select(migrations).where(migrations.c.id == whole.migration_id))
    ).one()
    assert m.parts == 3
    assert m.vms_total == 5
    assert sorted(set(m.parts_seen)) == [1, 2, 3]
    assert m.header["source"]["id"] == whole.source.id
    assert "vms" not in m.header


async def test_openstack_vms_start_at_initialize_too(db_session: AsyncSession) -> None:
    data = started(some_vms(1), source=provider("openstack"))
    await intake.accept_part(envelope(catalog.PLAN_STARTED, data), db_session)
    (row,) = await rows(db_session, data.migration_id)
    assert row.step == "Initialize"
    assert row.source_provider == data.source.id


async def test_a_cancel_before_the_part_applies_when_it_arrives(db_session: AsyncSession) -> None:
    members = some_vms(3)
    data = started(members)
    cancel = p.PlanCancelRequested(
        plan_id=data.plan_id, migration_id=data.migration_id, vm_ids=[members[1].vm_id]
    )
    assert (
        await intake.accept_cancel(envelope(catalog.PLAN_CANCEL_REQUESTED, cancel), db_session) == 0
    )
    await intake.accept_part(envelope(catalog.PLAN_STARTED, data), db_session)
    got = await rows(db_session, data.migration_id)
    assert [r.cancel_requested for r in got] == [False, True, False]
    whole = p.PlanCancelRequested(plan_id=data.plan_id, migration_id=data.migration_id)
    assert (
        await intake.accept_cancel(envelope(catalog.PLAN_CANCEL_REQUESTED, whole), db_session) == 2
    )
    assert all(r.cancel_requested for r in await rows(db_session, data.migration_id))


async def admit(
    session: AsyncSession, row: Any, plan_limit: int, source_limit: int, vm_limit: int = 20
) -> bool:
    return (await decide(session, row, plan_limit, source_limit, vm_limit)).admitted


async def decide(
    session: AsyncSession, row: Any, plan_limit: int, source_limit: int, vm_limit: int = 20
) -> admission.Decision:
    request = admission.Request(
        migration_id=row.migration_id,
        vm_id=row.vm_id,
        source_provider=row.source_provider,
        position=row.position,
        disks=len(row.spec["disks"]),
        vm_limit=vm_limit,
        plan_limit=plan_limit,
        source_limit=source_limit,
    )
    return await admission.admit(session, request, poll=1.0)


async def at_allocation(session: AsyncSession, migration_id: str) -> list[Any]:
    await session.execute(
        update(vms)
        .where(vms.c.migration_id == migration_id)
        .values(step="DiskAllocation", phase="Running")
    )
    return await rows(session, migration_id)


async def test_limits_per_plan_and_per_source(db_session: AsyncSession) -> None:
    source = provider("ovirt")
    data = started(some_vms(4, disks=2), source=source, max_disks_in_flight=4)
    await intake.accept_part(envelope(catalog.PLAN_STARTED, data), db_session)
    members = await at_allocation(db_session, data.migration_id)
    # Plan limit 4: two VMs of two disks each, not a third.
    assert [await admit(db_session, r, 4, 100) for r in members[:3]] == [True, True, False]
    # A VM bigger than the limit still runs when its plan holds nothing.
    big = started(some_vms(1, disks=6), source=provider("ovirt"))
    await intake.accept_part(envelope(catalog.PLAN_STARTED, big), db_session)
    (alone,) = await at_allocation(db_session, big.migration_id)
    assert await admit(db_session, alone, 4, 4)
    # Source limit 5: the first plan holds 4 on this source; one more 2-disk VM does not fit.
    other = started(some_vms(1, disks=2), source=source)
    await intake.accept_part(envelope(catalog.PLAN_STARTED, other), db_session)
    (second,) = await at_allocation(db_session, other.migration_id)
    assert not await admit(db_session, second, 10, 5)
    assert await admit(db_session, second, 10, 6)


async def test_a_waiting_plan_holding_less_goes_first(db_session: AsyncSession) -> None:
    source = provider("ovirt")
    busy = started(some_vms(3), source=source)
    fresh = started(some_vms(1), source=source)
    for data in (busy, fresh):
        await intake.accept_part(envelope(catalog.PLAN_STARTED, data), db_session)
    busy_rows = await at_allocation(db_session, busy.migration_id)
    (fresh_row,) = await at_allocation(db_session, fresh.migration_id)
    assert await admit(db_session, busy_rows[0], 10, 10)
    # ``busy`` holds one disk and ``fresh`` none while both wait: ``fresh`` is next.
    assert not await admit(db_session, busy_rows[1], 10, 10)
    assert await admit(db_session, fresh_row, 10, 10)
    assert await admit(db_session, busy_rows[1], 10, 10)


async def test_vms_in_flight_are_admitted_in_order_and_waiters_say_why(
    db_session: AsyncSession,
) -> None:
    data = started(some_vms(5))
    await intake.accept_part(envelope(catalog.PLAN_STARTED, data), db_session)
    members = await rows(db_session, data.migration_id)
    # The third VM asks first: the two before it go first, though a slot is free.
    early = await decide(db_session, members[2], 10, 10, vm_limit=2)
    assert not early.admitted
    assert early.reason is p.WaitReason.IN_LINE
    assert early.place == 3
    assert [await admit(db_session, r, 10, 10, vm_limit=2) for r in members[:2]] == [True, True]
    waiting = await decide(db_session, members[3], 10, 10, vm_limit=2)
    assert not waiting.admitted
    assert waiting.reason is p.WaitReason.PLAN_VMS
    assert (waiting.held, waiting.limit, waiting.place) == (2, 2, 2)
    assert waiting.estimated_start is None  # no VM finished yet: no guess
    detail = waiting.detail()
    assert detail["waiting"]["reason"] == "PlanVmLimit"
    assert "2 of 2 VMs in flight" in detail["note"]
    assert "2nd in line" in detail["note"]
    # One VM gets its target after a minute: its slot is free, and estimates begin.
    await db_session.execute(
        update(vms)
        .where(vms.c.vm_id == members[0].vm_id)
        .values(
            holds_vm=False,
            holding=0,
            admitted_at=func.now() - text("interval '60 seconds'"),
            released_at=func.now(),
        )
    )
    assert await admit(db_session, members[2], 10, 10, vm_limit=2)
    later = await decide(db_session, members[4], 10, 10, vm_limit=2)
    assert later.reason is p.WaitReason.PLAN_VMS
    assert later.estimated_start is not None
    assert later.estimated_start.second == 0  # to the minute


async def test_nothing_is_admitted_before_the_cutover(db_session: AsyncSession) -> None:
    cutover = datetime.now(UTC) + timedelta(hours=1)
    data = started(some_vms(2), cutover=cutover)
    await intake.accept_part(envelope(catalog.PLAN_STARTED, data), db_session)
    first, _ = await rows(db_session, data.migration_id)
    request = admission.Request(
        migration_id=first.migration_id,
        vm_id=first.vm_id,
        source_provider=first.source_provider,
        position=first.position,
        disks=1,
        vm_limit=20,
        plan_limit=10,
        source_limit=10,
        cutover=cutover,
    )
    decision = await admission.admit(db_session, request, poll=2.0)
    assert not decision.admitted
    assert decision.reason is p.WaitReason.CUTOVER
    assert decision.estimated_start == cutover
    assert decision.retry_after == 30.0  # an hour away: looked at every 15 polls
    assert first.holding == 0


async def test_a_cutover_change_is_kept_by_revision(db_session: AsyncSession) -> None:
    data = started(some_vms(1), cutover=datetime(2030, 1, 1, tzinfo=UTC))
    now = datetime.now(UTC)

    def change(revision: int, at: datetime | None) -> env.Envelope[Any]:
        body = p.PlanCutoverChanged(
            plan_id=data.plan_id, migration_id=data.migration_id, cutover=at, revision=revision
        )
        return envelope(catalog.PLAN_CUTOVER_CHANGED, body)

    # A change may come before the plan's parts: the frozen cutover does not undo it.
    assert await intake.accept_cutover(change(2, now), db_session)
    await intake.accept_part(envelope(catalog.PLAN_STARTED, data), db_session)
    assert not await intake.accept_cutover(change(1, None), db_session)  # older: ignored
    m = (
        await db_session.execute(select(migrations).where(migrations.c.id == data.migration_id))
    ).one()
    assert (m.cutover, m.cutover_revision) == (now, 2)
    assert await intake.accept_cutover(change(3, None), db_session)
