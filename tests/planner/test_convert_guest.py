"""``convertGuest`` through the real planner: off by default, set per plan and overridden
per VM, kept through create, update and read (the OpenAPI schema documents it), frozen
per VM into ``plan.started``, and ConvertGuest in the pipeline of exactly the VMs that
convert."""

from __future__ import annotations

from typing import Any

from tests.inventory.conftest import api
from tests.planner.conftest import start_and_capture
from tests.planner.test_cutover import new_plan, vm
from tests.planner.test_lifecycle import get
from tests.planner.test_views import assert_plan_answer
from tools.processes import ServiceProcess


async def test_plan_and_vm_choices_reach_the_frozen_plan_and_the_pipeline(
    planner: ServiceProcess, providers: dict[str, str]
) -> None:
    plan = await new_plan(planner, providers, [vm("db-1")])
    assert plan["convertGuest"] is False
    assert_plan_answer(plan)
    plan = await new_plan(
        planner,
        providers,
        [vm("rerun-a"), vm("rerun-b", convertGuest=False)],
        convertGuest=True,
    )
    assert plan["convertGuest"] is True
    assert plan["vms"][1]["convertGuest"] is False
    pid = plan["id"]
    r = await api(planner, "PATCH", f"/plans/{pid}", json={"description": "keeps it"})
    assert r.json()["convertGuest"] is True
    frozen = await start_and_capture(planner, pid)
    chosen: dict[str, Any] = {v["name"]: v["convert_guest"] for v in frozen["vms"]}
    assert chosen == {"rerun-a": True, "rerun-b": False}
    for v in frozen["vms"]:
        steps = [
            s["name"] for s in (await get(planner, f"/plans/{pid}/vms/{v['vm_id']}"))["pipeline"]
        ]
        if v["convert_guest"]:
            assert steps[-3:] == ["ConvertGuest", "VirtualMachineCreation", "Cleanup"]
        else:
            assert "ConvertGuest" not in steps
