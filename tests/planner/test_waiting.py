"""A VM that waits to be admitted (or for the cutover) says why: the orchestrator's Pending
event of its first step, with ``detail.note`` and ``detail.waiting``, reaches the VM's
summary (a page of VMs, one VM, the stream) on a real PostgreSQL. The newest wait wins
whatever order the events come in, and the wait ends when the step starts."""

from __future__ import annotations

import random
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from services.planner import status, streaming
from services.planner.projecting import Projector
from shared import envelope as env
from shared import payloads as p
from tests.planner.statusdata import at, finished, outbox, seed_plan, start, step_event
from tests.planner.test_status_api import app, client, get, poll_once, seeded, status_db

__all__ = ["app", "client", "status_db"]  # fixtures, imported for this module's tests

S, St, Oc = p.Step, p.StepState, p.Outcome


def wait_detail(place: int, reason: str = "PlanVmLimit", **more: Any) -> dict[str, object]:
    """The detail the orchestrator gives a waiting VM's first step."""
    return {
        "note": f"waiting: the plan has 4 of 4 VMs in flight; place {place}; starts in about "
        f"{place} min",
        "waiting": {
            "reason": reason,
            "held": 4,
            "limit": 4,
            "place": place,
            "estimatedStart": at(60 * place).isoformat(),
            "cutover": None,
            **more,
        },
    }


async def project(status_db: AsyncEngine, events: list[env.Envelope[Any]]) -> None:
    maker = async_sessionmaker(status_db, expire_on_commit=False)
    async with maker() as session, session.begin():
        projector = Projector(outbox(status_db))
        for e in events:
            await projector.apply(e, session)


async def test_a_queued_vm_says_why(client: httpx.AsyncClient, status_db: AsyncEngine) -> None:
    plan, [run] = await seeded(status_db, vms=3)  # vm-0000 migrated, the others Pending
    name = plan["name"]
    # vm-0001 moves up the line; the older "place 3" arrives last and must not win.
    await project(
        status_db,
        [
            step_event(run, "vm-0001", S.INITIALIZE, St.PENDING, time=100, detail=wait_detail(2)),
            step_event(run, "vm-0001", S.INITIALIZE, St.PENDING, time=90, detail=wait_detail(3)),
            step_event(run, "vm-0002", S.INITIALIZE, St.PENDING, time=100,
                       detail=wait_detail(1, "Cutover", cutover=at(3600).isoformat())),
        ],
    )  # fmt: skip

    page = (await get(client, f"/plans/{name}/vms")).json()
    by_id = {v["id"]: v for v in page["items"]}
    assert by_id["vm-0000"]["waiting"] is None
    first = by_id["vm-0001"]
    assert (first["phase"], first["step"]) == ("Pending", None)
    wait = first["waiting"]
    assert wait["step"] == "Initialize"
    assert wait["note"].startswith("waiting: the plan has 4 of 4 VMs in flight; place 2")
    assert (wait["reason"], wait["held"], wait["limit"], wait["place"]) == ("PlanVmLimit", 4, 4, 2)
    assert wait["estimatedStart"] == at(120).isoformat()
    assert wait["observedAt"] == at(100).isoformat()
    second = by_id["vm-0002"]["waiting"]
    assert (second["reason"], second["cutover"]) == ("Cutover", at(3600).isoformat())

    # One VM: the same, and its first step keeps the detail as the orchestrator sent it.
    one = (await get(client, f"/plans/{name}/vms/vm-0001")).json()
    assert one["waiting"] == wait
    initialize = one["pipeline"][0]
    assert initialize["state"] == "Pending"
    assert initialize["detail"]["waiting"]["place"] == 2

    # The stream's VM frames carry it too.
    frames = await poll_once(status_db, streaming.Cursor(floor=0), plan["plan_id"])
    vm_frames = {f["data"]["id"]: f["data"] for f in frames if f["event"] == "vm"}
    assert vm_frames["vm-0001"]["waiting"]["place"] == 2
    assert vm_frames["vm-0000"]["waiting"] is None

    # Admitted: the step runs, the wait and its note are gone (a note of its own stays).
    await project(
        status_db,
        [
            step_event(run, "vm-0001", S.INITIALIZE, St.RUNNING, started=110, time=110),
            step_event(run, "vm-0001", S.INITIALIZE, St.PENDING, time=105, detail=wait_detail(1)),
            step_event(run, "vm-0002", S.INITIALIZE, St.RUNNING, started=120, time=120,
                       detail={"note": "reading the source VM"}),
        ],
    )  # fmt: skip
    one = (await get(client, f"/plans/{name}/vms/vm-0001")).json()
    assert (one["phase"], one["step"], one["waiting"]) == ("Running", "Initialize", None)
    assert "waiting" not in one["pipeline"][0]["detail"]
    assert "note" not in one["pipeline"][0]["detail"]
    other = (await get(client, f"/plans/{name}/vms/vm-0002")).json()
    assert other["waiting"] is None
    assert other["pipeline"][0]["detail"] == {"note": "reading the source VM"}


async def test_a_vm_canceled_while_queued_waits_no_more(
    client: httpx.AsyncClient, status_db: AsyncEngine
) -> None:
    plan, [run] = await seeded(status_db, vms=2)
    await project(
        status_db,
        [
            step_event(run, "vm-0001", S.INITIALIZE, St.PENDING, time=100, detail=wait_detail(1)),
            finished(run, "vm-0001", Oc.CANCELED, time=101),
        ],
    )
    one = (await get(client, f"/plans/{plan['name']}/vms/vm-0001")).json()
    assert (one["phase"], one["waiting"]) == ("Canceled", None)
    page = (await get(client, f"/plans/{plan['name']}/vms")).json()
    assert all(v["waiting"] is None for v in page["items"])


async def test_the_newest_wait_wins_in_any_order(status_db: AsyncEngine) -> None:
    """Waits of one VM, shuffled and repeated: the detail is always the newest one's."""
    waits = [
        step_event_at(place, time)
        for place, time in ((5, 10.0), (4, 20.0), (3, 30.0), (2, 40.0), (1, 50.0))
    ]
    seen: list[Any] = []
    for seed in range(4):
        rnd = random.Random(seed)
        maker = async_sessionmaker(status_db, expire_on_commit=False)
        async with maker() as session, session.begin():
            plan = await seed_plan(session)
            run = await start(session, plan["plan_id"], vms=1, disks=1)
        events = [make(run) for make in waits]
        events = rnd.sample(events, len(events)) + rnd.sample(events, 2)
        await project(status_db, events)
        async with status_db.connect() as conn:
            view = await status.vm_status(conn, run.plan_id, "vm-0000")
        assert view is not None
        seen.append(view["pipeline"][0]["detail"])
    assert all(d == seen[0] for d in seen), seen
    assert seen[0]["waiting"]["place"] == 1
    assert seen[0]["note"].startswith("waiting: the plan has 4 of 4 VMs in flight; place 1")


def step_event_at(place: int, time: float) -> Any:
    """A waiting event of vm-0000 at ``time``, for a migration given later."""

    def make(run: p.PlanStarted) -> env.Envelope[Any]:
        return step_event(
            run, "vm-0000", S.INITIALIZE, St.PENDING, time=time, detail=wait_detail(place)
        )

    return make
