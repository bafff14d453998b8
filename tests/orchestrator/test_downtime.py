"""A plan's downtime, as its user sees it: no more source VMs down at once than the plan
admits, queued VMs left running and untouched, and no power-off before the cutover.

The pieces are real (the orchestrator and controller processes, the simulated cluster whose
kubelet runs the real populators, the oVirt engine with its real imageio). What is checked
is what the user sees: the engine's own power timeline of every source VM (``sim/power.py``)
against the time each target VirtualMachine was created, never the orchestrator's counters.
A source VM is *down* from its power-off until its target VM exists (or it is powered on
again after a failure or cancel).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from kubernetes_asyncio import client

from shared import catalog
from shared import payloads as p
from shared.devservices import DevServices
from sim.ovirt import scenario
from sim.ovirt.engine import Engine
from tests.conftest import eventually, plain_dsn
from tests.orchestrator.pipelines import (
    ControllerProcess,
    cancel,
    labelled,
    ovirt_source,
    plan_of,
    planned,
    publisher,
    start_plan,
    vm_state,
    wait_vm,
)
from tests.orchestrator.pipelines import ovirt_disk as _disk
from tools.downtime import Change, as_users_see, max_down
from tools.processes import ServiceProcess

FLEET = 30
LIMIT = 4

SCENARIO: dict[str, Any] = {
    "vms": [
        *(
            {"name": f"fleet-{i}", "disks": [_disk(f"fleet-{i}-disk", "4MiB")]}
            for i in range(FLEET)
        ),
        *({"name": f"share-{i}", "disks": [_disk(f"share-{i}-disk", "4MiB")]} for i in range(8)),
        *({"name": f"cut-{i}", "disks": [_disk(f"cut-{i}-disk", "4MiB")]} for i in range(4)),
        # Copies for about 8 s: the queued VM is canceled while this one holds the slot,
        # even on a loaded machine.
        {"name": "hold", "disks": [_disk("hold-disk", "16MiB")]},
        {"name": "queued", "disks": [_disk("queued-disk", "4MiB")]},
        {"name": "bad", "disks": [_disk("bad-disk", "4MiB")]},
        {"name": "after-bad", "disks": [_disk("after-bad-disk", "4MiB")]},
    ],
    "faults": [
        # Copies take a little real time, so VMs overlap and queue.
        *(
            {"kind": "bandwidth", "disk": f"fleet-{i}-disk", "bytes_per_second": "4MiB"}
            for i in range(FLEET)
        ),
        {"kind": "bandwidth", "disk": "hold-disk", "bytes_per_second": "1MiB"},
    ],
}


@pytest.fixture(scope="module")
async def engine(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Engine]:
    inv, faults = scenario.from_dict(SCENARIO)
    async with Engine(inv, faults, tmp_path_factory.mktemp("engine")) as e:
        yield e


@pytest.fixture(scope="module")
async def source(engine: Engine, kube: client.ApiClient) -> p.ProviderRef:
    return await ovirt_source(engine, kube)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(plain_dsn(database_url))
    yield conn
    await conn.close()


def timeline(engine: Engine, vm_id: str) -> list[Change]:
    return [Change(c.at, c.state, c.status) for c in engine.inv.vms[vm_id].power.changes]


async def vm_rows(db: asyncpg.Connection, plan: p.PlanStarted) -> dict[str, Any]:
    rows = await db.fetch(
        "SELECT v.vm_id, v.phase, v.admitted_at, v.released_at, s.completed_at AS created_at"
        " FROM orchestrator.vms v LEFT JOIN orchestrator.steps s"
        "  ON s.migration_id = v.migration_id AND s.vm_id = v.vm_id"
        "  AND s.step = 'VirtualMachineCreation' AND s.task = '' AND s.state = 'Completed'"
        " WHERE v.migration_id = $1",
        plan.migration_id,
    )
    return {r["vm_id"]: r for r in rows}


async def wait_all(db: asyncpg.Connection, plan: p.PlanStarted, within: float) -> dict[str, Any]:
    async def done() -> bool:
        rows = await vm_rows(db, plan)
        return len(rows) == len(plan.vms) and all(
            r["phase"] in ("Succeeded", "Failed", "Canceled") for r in rows.values()
        )

    await eventually(done, within=within, what=f"every VM of {plan.plan_name} finished")
    return await vm_rows(db, plan)


async def waiting_reason(svc: ServiceProcess, plan: p.PlanStarted, vm_id: str) -> str | None:
    """What the VM's first step says it waits for (``detail.waiting.reason``), if it waits."""
    state = await vm_state(svc, plan, vm_id)
    for step in state.get("pipeline") or []:
        waiting = (step.get("detail") or {}).get("waiting")
        if waiting:
            return str(waiting.get("reason"))
    return None


async def test_no_more_source_vms_down_than_admitted_and_queued_ones_stay_up(
    engine: Engine,
    source: p.ProviderRef,
    running: tuple[ServiceProcess, ControllerProcess],
    servers: DevServices,
    prefix: str,
    db: asyncpg.Connection,
    database_url: str,
) -> None:
    fleet = [planned(engine, f"fleet-{i}") for i in range(FLEET)]
    assert all(engine.inv.vms[vm.vm_id].status == "up" for vm in fleet)
    plan = plan_of(source, fleet, max_vms_in_flight=LIMIT, max_disks_in_flight=10)
    began = datetime.now(UTC).timestamp()
    touched_while_queued: list[str] = []
    stop = asyncio.Event()

    async def watch_queued() -> None:
        # The engine first, then the database: a VM the database still shows waiting was
        # waiting when the engine was read, so its source must have been up then.
        own = await asyncpg.connect(plain_dsn(database_url))
        try:
            await _watch(own)
        finally:
            await own.close()

    async def _watch(own: asyncpg.Connection) -> None:
        while not stop.is_set():
            status = {vm.vm_id: engine.inv.vms[vm.vm_id].status for vm in fleet}
            waiting = await own.fetch(
                "SELECT vm_id FROM orchestrator.vms WHERE migration_id = $1"
                " AND admitted_at IS NULL",
                plan.migration_id,
            )
            touched_while_queued.extend(r["vm_id"] for r in waiting if status[r["vm_id"]] != "up")
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch_queued())
    try:
        async with publisher(servers, prefix) as bus:
            await start_plan(bus, plan)
        rows = await wait_all(db, plan, within=420)
    finally:
        stop.set()
        await watcher
    assert {r["phase"] for r in rows.values()} == {"Succeeded"}, rows
    assert touched_while_queued == []
    # What the user sees: each source is down from its power-off until its target VM exists.
    timelines = {vm.vm_id: timeline(engine, vm.vm_id) for vm in fleet}
    seen = {
        vm_id: as_users_see(timelines[vm_id], r["created_at"].timestamp())
        for vm_id, r in rows.items()
    }
    peak = max_down(seen, since=began)
    assert 2 <= peak <= LIMIT, peak
    for vm in fleet:
        down = next(c.at for c in timelines[vm.vm_id] if c.at >= began and c.state == "down")
        assert down >= rows[vm.vm_id]["admitted_at"].timestamp(), vm.name  # admitted first


async def test_canceling_a_queued_vm_touches_nothing(
    engine: Engine,
    kube: client.ApiClient,
    source: p.ProviderRef,
    running: tuple[ServiceProcess, ControllerProcess],
    servers: DevServices,
    prefix: str,
    db: asyncpg.Connection,
) -> None:
    svc, _ = running
    hold, queued = planned(engine, "hold"), planned(engine, "queued")
    plan = plan_of(source, [hold, queued], max_vms_in_flight=1)
    async with publisher(servers, prefix) as bus:
        await start_plan(bus, plan)

        async def waits() -> bool:
            return await waiting_reason(svc, plan, queued.vm_id) == "PlanVmLimit"

        await eventually(waits, within=60, what="the second VM waiting for the plan's VM slot")
        await cancel(bus, plan, [queued.vm_id])
    state = await wait_vm(svc, plan, queued.vm_id, within=60)
    assert state["phase"] == "Canceled", state
    assert state["startedAt"] is None
    assert state["admittedAt"] is None
    # Never touched: its source never changed state, nothing of it exists in the cluster.
    assert [c.state for c in timeline(engine, queued.vm_id)] == ["up"]
    assert not any((await labelled(kube, f"hoist.io/vm={queued.vm_id}")).values())
    rows = await wait_all(db, plan, within=120)
    assert rows[hold.vm_id]["phase"] == "Succeeded"


async def test_a_failure_frees_its_slot_at_once(
    engine: Engine,
    source: p.ProviderRef,
    running: tuple[ServiceProcess, ControllerProcess],
    servers: DevServices,
    prefix: str,
    db: asyncpg.Connection,
) -> None:
    svc, _ = running
    bad = planned(engine, "bad")
    # A disk the source VM does not have: Initialize fails, before the source is touched.
    gone = bad.disks[0].model_copy(update={"disk_id": str(uuid.uuid4())})
    bad = bad.model_copy(update={"disks": [*bad.disks, gone]})
    after = planned(engine, "after-bad")
    plan = plan_of(source, [bad, after], max_vms_in_flight=1)
    async with publisher(servers, prefix) as bus:
        await start_plan(bus, plan)
    rows = await wait_all(db, plan, within=120)
    failed = await vm_state(svc, plan, bad.vm_id)
    assert failed["phase"] == "Failed", failed
    assert failed["error"]["reason"] == "DiskNotFound", failed
    assert rows[after.vm_id]["phase"] == "Succeeded"
    # The slot went to the next VM once the failed one gave it back, not at the plan's end.
    assert rows[bad.vm_id]["released_at"] <= rows[after.vm_id]["admitted_at"]
    assert not failed["holdsVmSlot"]
    assert failed["disksInFlight"] == 0
    assert [c.state for c in timeline(engine, bad.vm_id)] == ["up"]


async def test_two_plans_on_one_source_share_it_fairly(
    engine: Engine,
    source: p.ProviderRef,
    running: tuple[ServiceProcess, ControllerProcess],
    servers: DevServices,
    prefix: str,
    db: asyncpg.Connection,
) -> None:
    plans = [
        plan_of(
            source,
            [planned(engine, f"share-{i}") for i in range(first, first + 4)],
            max_vms_in_flight=4,
            max_disks_in_flight_per_source=2,
        )
        for first in (0, 4)
    ]
    async with publisher(servers, prefix) as bus:
        for plan in plans:
            await start_plan(bus, plan)
    admitted: list[tuple[datetime, int]] = []
    for index, plan in enumerate(plans):
        rows = await wait_all(db, plan, within=240)
        assert {r["phase"] for r in rows.values()} == {"Succeeded"}
        admitted += [(r["admitted_at"], index) for r in rows.values()]
    # From the moment both plans were known to the orchestrator (a plan's parts may arrive
    # a little after the other's: until then the first rightly has the source alone),
    # neither got ahead of the other by more than the source's two slots.
    both = await db.fetchval(
        "SELECT max(created_at) FROM orchestrator.migrations WHERE id = ANY($1::text[])",
        [plan.migration_id for plan in plans],
    )
    counts = [0, 0]
    for _, index in sorted(a for a in admitted if a[0] >= both):
        counts[index] += 1
        assert abs(counts[0] - counts[1]) <= 2, sorted(admitted)


async def test_no_power_off_before_the_cutover_and_a_moved_cutover_takes_effect(
    engine: Engine,
    source: p.ProviderRef,
    running: tuple[ServiceProcess, ControllerProcess],
    servers: DevServices,
    prefix: str,
    db: asyncpg.Connection,
) -> None:
    svc, _ = running
    cutover = datetime.now(UTC) + timedelta(seconds=6)
    soon = plan_of(source, [planned(engine, f"cut-{i}") for i in (0, 1)], cutover=cutover)
    later = plan_of(
        source,
        [planned(engine, f"cut-{i}") for i in (2, 3)],
        cutover=datetime.now(UTC) + timedelta(hours=1),
    )
    async with publisher(servers, prefix) as bus:
        for plan in (soon, later):
            await start_plan(bus, plan)

        async def later_waits() -> bool:
            # Only ``later``'s: on a loaded machine ``soon``'s cutover may pass before its
            # VMs are looked at (what holds for them is checked at the end).
            reasons = [await waiting_reason(svc, later, vm.vm_id) for vm in later.vms]
            return reasons == ["Cutover"] * len(later.vms)

        await eventually(later_waits, within=60, what="the later plan waiting for its cutover")
        assert all(engine.inv.vms[vm.vm_id].status == "up" for vm in later.vms)
        # ``later`` is brought forward to now; a stale change that arrives after is ignored.
        for revision, at in ((2, None), (1, datetime.now(UTC) + timedelta(hours=2))):
            change = p.PlanCutoverChanged(
                plan_id=later.plan_id, migration_id=later.migration_id, cutover=at,
                revision=revision,
            )  # fmt: skip
            await bus.publish(catalog.PLAN_CUTOVER_CHANGED, change)
    for plan in (soon, later):
        rows = await wait_all(db, plan, within=120)
        assert {r["phase"] for r in rows.values()} == {"Succeeded"}
    for vm in soon.vms:
        first_down = next(c.at for c in timeline(engine, vm.vm_id) if c.state == "down")
        assert first_down >= cutover.timestamp(), vm.name
