"""A plan's downtime through the real planner: ``limits.maxVmsInFlight``, ``cutover`` and a
VM's own ``targetPowerState`` on create and update (every bad value a precise 422), in the
frozen plan, and ``PUT /plans/{plan}/cutover`` before the start and while the plan runs,
when each change goes out as ``plan.cutover.changed`` with a growing revision."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import nats
import pytest

from shared import catalog
from shared import envelope as env
from shared import payloads as p
from tests.inventory.conftest import PREFIX, api, unique
from tests.planner.conftest import make_maps, plan_body, start_and_capture
from tests.planner.test_plans import has_loc
from tests.planner.test_views import assert_plan_answer
from tools.processes import ServiceProcess

LATER = "2030-05-01T22:00:00+02:00"
LATER_UTC = "2030-05-01T20:00:00+00:00"


def vm(name: str, **more: Any) -> dict[str, Any]:
    """A VM of the plan under a target name of its own (plans of this module never collide)."""
    return {"name": name, "targetName": unique("cut"), **more}


async def new_plan(
    planner: ServiceProcess, providers: dict[str, str], vms: list[dict[str, Any]], **over: Any
) -> dict[str, Any]:
    maps = await make_maps(planner, providers)
    r = await api(planner, "POST", "/plans", json=plan_body(providers, maps, vms, **over))
    assert r.status_code == 201, r.text
    plan: dict[str, Any] = r.json()
    assert plan["phase"] == "Ready", plan["problems"]
    return plan


async def put_cutover(planner: ServiceProcess, ref: str, at: Any) -> dict[str, Any]:
    r = await api(planner, "PUT", f"/plans/{ref}/cutover", json={"at": at})
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] == f'"{r.json()["revision"]}"'
    body: dict[str, Any] = r.json()
    assert_plan_answer(body)  # the answer its OpenAPI schema documents
    return body


class Changes:
    """``plan.cutover.changed`` events of one plan as NATS delivers them."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    async def on_msg(self, msg: Any) -> None:
        self.got.append(json.loads(msg.data))
        self.arrived.set()

    async def wait_for(self, count: int) -> list[p.PlanCutoverChanged]:
        """The first ``count`` changes, decoded and checked as the orchestrator would."""

        async def enough() -> None:
            while len(self.got) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), 30)
        out: list[p.PlanCutoverChanged] = []
        for e in self.got:
            decoded = env.decode(json.dumps(e).encode())
            assert decoded.type == catalog.PLAN_CUTOVER_CHANGED.ce_type
            assert isinstance(decoded.data, p.PlanCutoverChanged)
            out.append(decoded.data)
        return out


@pytest.fixture
async def nc(planner: ServiceProcess) -> AsyncIterator[Any]:
    conn = await nats.connect(planner.env["HOIST_NATS_URL"])
    yield conn
    await conn.drain()


async def test_create_and_update_with_the_new_fields(
    planner: ServiceProcess, providers: dict[str, str]
) -> None:
    plan = await new_plan(
        planner, providers, [vm("web-1", targetPowerState="on"), vm("db-1")],
        cutover=LATER, limits={"maxVmsInFlight": 3}, targetPowerState="off",
    )  # fmt: skip
    assert plan["cutover"] == LATER_UTC
    assert plan["cutoverRevision"] == 0
    assert plan["limits"] == {
        "maxDisksInFlight": 10,
        "maxDisksInFlightPerSource": 20,
        "maxVmsInFlight": 3,
    }
    assert [v.get("targetPowerState") for v in plan["vms"]] == ["on", None]
    pid = plan["id"]

    # PATCH: another time (revision 1), the same again (no change), then cleared (2).
    r = await api(planner, "PATCH", f"/plans/{pid}", json={"cutover": "2031-01-01T00:00:00Z"})
    assert r.status_code == 200, r.text
    assert (r.json()["cutover"], r.json()["cutoverRevision"]) == ("2031-01-01T00:00:00+00:00", 1)
    r = await api(planner, "PATCH", f"/plans/{pid}", json={"cutover": "2031-01-01T01:00:00+01:00"})
    assert r.json()["cutoverRevision"] == 1
    r = await api(planner, "PATCH", f"/plans/{pid}", json={"description": "keeps the cutover"})
    assert (r.json()["cutover"], r.json()["cutoverRevision"]) == ("2031-01-01T00:00:00+00:00", 1)
    r = await api(planner, "PATCH", f"/plans/{pid}", json={"cutover": None})
    assert (r.json()["cutover"], r.json()["cutoverRevision"]) == (None, 2)
    r = await api(planner, "PATCH", f"/plans/{pid}", json={"limits": {"maxDisksInFlight": 2}})
    assert r.json()["limits"]["maxVmsInFlight"] == 20  # the planner's default again

    # The cutover route before the start: the plan changes, nobody else is told.
    got = await put_cutover(planner, pid, LATER)
    assert (got["cutover"], got["cutoverRevision"], got["phase"]) == (LATER_UTC, 3, "Ready")
    # "now" is the server's time while it handles the request (same host, same clock).
    before = datetime.now(UTC)
    got = await put_cutover(planner, plan["name"], "now")
    after = datetime.now(UTC)
    assert before <= datetime.fromisoformat(got["cutover"]) <= after, (before, got, after)
    assert got["cutoverRevision"] == 4
    read = (await api(planner, "GET", f"/plans/{pid}")).json()
    assert (read["cutover"], read["cutoverRevision"]) == (got["cutover"], 4)


async def test_bad_values_are_precise_422s(
    planner: ServiceProcess, providers: dict[str, str]
) -> None:
    maps = await make_maps(planner, providers)
    base = plan_body(providers, maps, [vm("db-1")])
    cases: list[tuple[dict[str, Any], list[Any], str]] = [
        ({**base, "cutover": "2030-05-01T22:00:00"}, ["body", "cutover"], "timezone_aware"),
        ({**base, "cutover": "2030-05-01"}, ["body", "cutover"], "value_error"),
        ({**base, "cutover": 1_900_000_000}, ["body", "cutover"], "value_error"),
        ({**base, "cutover": "now"}, ["body", "cutover"], "value_error"),
        ({**base, "cutover": "2030-13-01T00:00:00Z"}, ["body", "cutover"], ""),
        ({**base, "cutover": "0001-01-01T00:00:00+01:00"}, ["body", "cutover"], "value_error"),
        ({**base, "limits": {"maxVmsInFlight": 0}}, ["body", "limits", "maxVmsInFlight"], ""),
        ({**base, "limits": {"maxVmsInFlight": 10_001}}, ["body", "limits", "maxVmsInFlight"],
         ""),
        ({**base, "vms": [vm("db-1", targetPowerState="sideways")]},
         ["body", "vms", 0, "targetPowerState"], "enum"),
    ]  # fmt: skip
    for body, loc, kind in cases:
        r = await api(planner, "POST", "/plans", json=body)
        assert r.status_code == 422, (body, r.text)
        assert has_loc(r.json(), loc), (loc, r.json())
        if kind:
            assert any(d["type"] == kind for d in r.json()["detail"]), r.json()

    plan = (await api(planner, "POST", "/plans", json=base)).json()
    pid = plan["id"]
    r = await api(planner, "PATCH", f"/plans/{pid}", json={"cutover": "2030-05-01T22:00"})
    assert r.status_code == 422
    assert has_loc(r.json(), ["body", "cutover"])
    bodies: list[tuple[Any, list[Any]]] = [
        ({}, ["body", "at"]),
        ({"at": "tomorrow"}, ["body", "at"]),
        ({"at": "2030-05-01T22:00:00"}, ["body", "at"]),
        ({"at": 5}, ["body", "at"]),
        ({"at": "now", "surprise": 1}, ["body", "surprise"]),
        ([], ["body"]),
    ]
    for body, loc in bodies:
        r = await api(planner, "PUT", f"/plans/{pid}/cutover", json=body)
        assert r.status_code == 422, (body, r.text)
        assert has_loc(r.json(), loc), (loc, r.json())
    r = await api(planner, "PUT", f"/plans/{pid}/cutover", content=b"{not json",
                  headers={"Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 422
    r = await api(planner, "PUT", f"/plans/{pid}/cutover")
    assert r.status_code == 422
    assert (await api(planner, "PUT", "/plans/no-such-plan/cutover", json={"at": None})
            ).status_code == 404  # fmt: skip
    nul = await api(planner, "PUT", "/plans/%00/cutover", json={"at": None})
    assert 400 <= nul.status_code < 500, nul.text
    await api(planner, "POST", f"/plans/{pid}/archive")
    r = await api(planner, "PUT", f"/plans/{pid}/cutover", json={"at": "now"})
    assert r.status_code == 409
    assert "archived" in r.text


async def test_the_frozen_plan_carries_them(
    planner: ServiceProcess, providers: dict[str, str]
) -> None:
    plan = await new_plan(
        planner, providers, [vm("web-1", targetPowerState="on"), vm("Weird Name_#1")],
        cutover=LATER, limits={"maxVmsInFlight": 7}, targetPowerState="off",
    )  # fmt: skip
    frozen = await start_and_capture(planner, plan["id"])
    assert frozen["max_vms_in_flight"] == 7
    assert datetime.fromisoformat(frozen["cutover"]) == datetime.fromisoformat(LATER)
    assert frozen["target_power_state"] == "off"
    assert [v["target_power_state"] for v in frozen["vms"]] == ["on", None]

    # Without them: the planner's default limit, no cutover.
    other = await new_plan(planner, providers, [vm("db-1")])
    frozen = await start_and_capture(planner, other["id"])
    assert (frozen["max_vms_in_flight"], frozen["cutover"]) == (20, None)
    assert frozen["vms"][0]["target_power_state"] is None


async def test_moving_the_cutover_of_a_running_plan(
    planner: ServiceProcess, providers: dict[str, str], nc: Any
) -> None:
    plan = await new_plan(planner, providers, [vm("rerun-a"), vm("rerun-b")], cutover=LATER)
    pid = plan["id"]
    before = await put_cutover(planner, pid, "2030-06-01T00:00:00Z")  # revision 1, not told
    changes = Changes()
    await nc.subscribe(f"{PREFIX}.plan.{pid}.cutover", cb=changes.on_msg)
    frozen = await start_and_capture(planner, pid)
    assert frozen["cutover"].startswith("2030-06-01T00:00:00")

    # PATCH of the cutover is refused while running, and says where to go.
    r = await api(planner, "PATCH", f"/plans/{pid}", json={"cutover": None})
    assert r.status_code == 409
    assert r.json()["detail"][0]["loc"] == ["body", "cutover"]
    assert f"PUT /api/v1/plans/{plan['name']}/cutover" in r.json()["detail"][0]["msg"]

    # Each change of the running plan goes out with the next revision.
    later = await put_cutover(planner, pid, "2030-07-01T00:00:00+00:00")
    assert (later["phase"], later["cutoverRevision"]) == ("Running", before["cutoverRevision"] + 1)
    same = await put_cutover(planner, pid, "2030-07-01T02:00:00+02:00")
    assert same["cutoverRevision"] == later["cutoverRevision"]  # the same time: no change
    now = await put_cutover(planner, plan["name"], "now")
    cleared = await put_cutover(planner, pid, None)
    assert cleared["cutover"] is None
    got = await changes.wait_for(3)
    await asyncio.sleep(0.5)  # nothing more comes (the unchanged time was not sent)
    assert len(changes.got) == 3, changes.got
    by_revision = sorted(got, key=lambda d: d.revision)
    first = before["cutoverRevision"] + 1
    assert [d.revision for d in by_revision] == [first, first + 1, first + 2]
    assert {d.plan_id for d in got} == {pid}
    assert {d.migration_id for d in got} == {frozen["migration_id"]}
    assert [d.cutover for d in by_revision] == [
        datetime(2030, 7, 1, tzinfo=UTC),
        datetime.fromisoformat(now["cutover"]),
        None,
    ]
