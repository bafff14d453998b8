"""``precopyIntervalMinutes`` through the real planner: its default, its range (a precise
422 outside it), a round trip through create, update and read, and the value frozen into
``plan.started``. Cold plans carry it too (the orchestrator ignores it there), which is
what lets these tests start plans of the simulated engine, whose disks cannot go warm."""

from __future__ import annotations

from typing import Any

from tests.inventory.conftest import api
from tests.planner.conftest import make_maps, plan_body, start_and_capture
from tests.planner.test_cutover import new_plan, vm
from tests.planner.test_plans import codes, has_loc
from tools.processes import ServiceProcess


async def test_default_round_trip_and_frozen_value(
    planner: ServiceProcess, providers: dict[str, str]
) -> None:
    plan = await new_plan(planner, providers, [vm("db-1")])
    assert plan["precopyIntervalMinutes"] == 60
    pid = plan["id"]
    r = await api(planner, "PATCH", f"/plans/{pid}", json={"precopyIntervalMinutes": 15})
    assert r.status_code == 200, r.text
    assert r.json()["precopyIntervalMinutes"] == 15
    r = await api(planner, "PATCH", f"/plans/{pid}", json={"description": "keeps it"})
    assert r.json()["precopyIntervalMinutes"] == 15
    assert (await api(planner, "GET", f"/plans/{pid}")).json()["precopyIntervalMinutes"] == 15
    frozen = await start_and_capture(planner, pid)
    assert frozen["precopy_interval_minutes"] == 15

    other = await new_plan(planner, providers, [vm("rerun-b")], precopyIntervalMinutes=1440)
    assert other["precopyIntervalMinutes"] == 1440
    r = await api(planner, "PATCH", f"/plans/{other['id']}", json={"precopyIntervalMinutes": None})
    assert r.json()["precopyIntervalMinutes"] == 60  # null: the default again
    frozen = await start_and_capture(planner, other["id"])
    assert frozen["precopy_interval_minutes"] == 60


async def test_out_of_range_is_a_precise_422(
    planner: ServiceProcess, providers: dict[str, str]
) -> None:
    maps = await make_maps(planner, providers)
    base = plan_body(providers, maps, [vm("db-1")])
    loc = ["body", "precopyIntervalMinutes"]
    for value, kind in ((0, "greater_than_equal"), (1441, "less_than_equal"),
                        (-5, "greater_than_equal"), ("hourly", "int_parsing"),
                        (1.5, "int_from_float")):  # fmt: skip
        r = await api(planner, "POST", "/plans", json={**base, "precopyIntervalMinutes": value})
        assert r.status_code == 422, (value, r.text)
        assert has_loc(r.json(), loc), r.json()
        assert any(d["type"] == kind for d in r.json()["detail"]), r.json()
    r = await api(planner, "POST", "/plans", json={**base, "precopyIntervalMinutes": 1})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    r = await api(planner, "PATCH", f"/plans/{pid}", json={"precopyIntervalMinutes": 0})
    assert r.status_code == 422
    assert has_loc(r.json(), loc)
    r = await api(planner, "GET", f"/plans/{pid}")
    assert r.json()["precopyIntervalMinutes"] == 1


async def test_a_warm_plan_of_the_simulated_engine_names_its_disks(
    planner: ServiceProcess, providers: dict[str, str]
) -> None:
    """The engine (4.5) may go warm, its disks (backup none) may not: each is a problem at
    its own path, and switching the plan to cold clears them."""
    maps = await make_maps(planner, providers)
    body = plan_body(providers, maps, [vm("web-1"), vm("db-1")], migrationType="warm",
                     precopyIntervalMinutes=5)  # fmt: skip
    plan: dict[str, Any] = (await api(planner, "POST", "/plans", json=body)).json()
    assert plan["phase"] == "NotReady"
    assert (plan["migrationType"], plan["precopyIntervalMinutes"]) == ("warm", 5)
    assert codes(plan) == {
        ("vms[0].disks[0]", "DiskIncrementalBackupDisabled"),
        ("vms[0].disks[1]", "DiskIncrementalBackupDisabled"),
        ("vms[1].disks[0]", "DiskIncrementalBackupDisabled"),
    }
    messages = [p["message"] for p in plan["problems"]]
    assert any("disk 'web-1-data' does not have incremental backup enabled" in m
               for m in messages), messages  # fmt: skip
    r = await api(planner, "PATCH", f"/plans/{plan['id']}", json={"migrationType": "cold"})
    assert r.json()["phase"] == "Ready", r.json()["problems"]
