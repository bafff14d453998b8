"""Hooks through the real planner: CRUD with a precise 4xx for each wrong field, an event
per change, plans naming hooks for every VM or one (a VM's own replacing the plan's, or
none), refused references, a hook in use kept from deletion, and the frozen plan: each
VM's hooks and its source as the inventory knows it, PreHook and PostHook in exactly those
VMs' pipelines."""

from __future__ import annotations

import json
from typing import Any

import nats

from services.planner.hooks import Hook
from tests.conftest import eventually
from tests.inventory.conftest import PREFIX, api, unique
from tests.planner.conftest import make_maps, plan_body, start_and_capture
from tests.planner.test_cutover import new_plan, vm
from tests.planner.test_lifecycle import get
from tests.planner.test_views import assert_answer, assert_plan_answer
from tools.processes import ServiceProcess

PLAYBOOK = "- hosts: localhost\n  tasks:\n    - debug: {msg: hello}\n"


def loc(r: Any) -> list[Any]:
    return [d["loc"] for d in r.json()["detail"]]


async def hook(planner: ServiceProcess, **body: Any) -> dict[str, Any]:
    r = await api(planner, "POST", "/hooks", json={"name": unique("hk"), "image": "x/y:1", **body})
    assert r.status_code == 201, r.text
    assert r.headers["ETag"] == f'"{r.json()["revision"]}"'
    assert_answer(r.json(), Hook)
    created: dict[str, Any] = r.json()
    return created


async def test_crud_and_refusals(planner: ServiceProcess) -> None:
    nc = await nats.connect(planner.env["HOIST_NATS_URL"])
    seen: list[dict[str, Any]] = []

    async def on_msg(msg: Any) -> None:
        seen.append(json.loads(msg.data))

    await nc.subscribe(f"{PREFIX}.plan.hook.>", cb=on_msg)
    try:
        made = await hook(planner, playbook=PLAYBOOK, serviceAccount="hooks", retries=2)
        assert made["deadlineSeconds"] == 600
        assert made["playbook"] == PLAYBOOK
        assert made["plans"] == []
        name = made["name"]
        again = await api(planner, "POST", "/hooks", json={"name": name, "image": "a"})
        assert again.status_code == 409
        assert loc(again) == [["body", "name"]]
        for bad, where in (
            ({"image": "has blank"}, "image"),
            ({"image": ""}, "image"),
            ({"playbook": "a: b"}, "playbook"),
            ({"playbook": "- [unclosed"}, "playbook"),
            ({"deadlineSeconds": 0}, "deadlineSeconds"),
            ({"retries": 11}, "retries"),
            ({"serviceAccount": "Not_A_Name"}, "serviceAccount"),
            ({"imag": "typo"}, "imag"),
        ):
            body = {"name": unique("hk"), "image": "x", **bad}
            r = await api(planner, "POST", "/hooks", json=body)
            assert r.status_code == 422, (bad, r.text)
            assert ["body", where] in loc(r), (bad, r.json())
        assert (await api(planner, "GET", f"/hooks/{made['id']}")).json()["name"] == name
        assert (await api(planner, "GET", "/hooks/nope-nope")).status_code == 404
        listed = (await api(planner, "GET", "/hooks")).json()["items"]
        assert name in [h["name"] for h in listed]
        stale = await api(
            planner,
            "PATCH",
            f"/hooks/{name}",
            json={"retries": 1},
            headers={"If-Match": '"999999999"'},
        )
        assert stale.status_code == 412
        r = await api(
            planner,
            "PATCH",
            f"/hooks/{name}",
            json={"playbook": None, "deadlineSeconds": 30},
            headers={"If-Match": f'"{made["revision"]}"'},
        )
        assert r.status_code == 200, r.text
        assert r.json()["playbook"] is None
        assert r.json()["deadlineSeconds"] == 30
        assert (
            await api(planner, "PATCH", f"/hooks/{name}", json={"image": None})
        ).status_code == 422
        assert (await api(planner, "DELETE", f"/hooks/{name}")).status_code == 204
        assert (await api(planner, "DELETE", f"/hooks/{name}")).status_code == 404

        await eventually(
            lambda: len([e for e in seen if e["data"]["name"] == name]) >= 3, what="3 events"
        )
        mine = [e for e in seen if e["data"]["name"] == name]
        assert [e["data"]["action"] for e in mine] == ["created", "updated", "deleted"]
        assert mine[0]["type"] == "io.hoist.plan.hook.changed.v1"
    finally:
        await nc.drain()


async def test_plans_reference_hooks_and_freeze_them(
    planner: ServiceProcess, providers: dict[str, str]
) -> None:
    pre = await hook(planner, playbook=PLAYBOOK)
    post = await hook(planner, deadlineSeconds=45, retries=1)
    other = await hook(planner)
    maps = await make_maps(planner, providers)
    refused = await api(
        planner,
        "POST",
        "/plans",
        json=plan_body(
            providers,
            maps,
            [vm("db-1", hooks=[{"step": "PreHook", "hook": "no-such-hook"}])],
            hooks=[{"step": "PostHook", "hook": "missing-too"}],
        ),
    )
    assert refused.status_code == 422, refused.text
    assert loc(refused) == [
        ["body", "hooks", 0, "hook"],
        ["body", "vms", 0, "hooks", 0, "hook"],
    ]
    twice = [{"step": "PreHook", "hook": pre["name"]}, {"step": "PreHook", "hook": other["name"]}]
    r = await api(
        planner, "POST", "/plans", json=plan_body(providers, maps, [vm("db-1")], hooks=twice)
    )
    assert r.status_code == 422
    assert ["body", "hooks"] in loc(r)
    plan = await new_plan(
        planner,
        providers,
        [
            vm("rerun-a"),
            vm("rerun-b", hooks=[{"step": "PreHook", "hook": other["name"]}]),
            vm(
                "db-1",
                hooks=[{"step": "PreHook", "hook": None}, {"step": "PostHook", "hook": None}],
            ),
        ],
        hooks=[
            {"step": "PreHook", "hook": pre["name"]},
            {"step": "PostHook", "hook": post["name"]},
        ],
    )
    assert_plan_answer(plan)
    assert [h["step"] for h in plan["hooks"]] == ["PreHook", "PostHook"]
    used = await api(planner, "DELETE", f"/hooks/{other['name']}")
    assert used.status_code == 409
    assert plan["name"] in used.json()["detail"][0]["msg"]
    assert (await api(planner, "GET", f"/hooks/{pre['name']}")).json()["plans"] == [plan["name"]]
    wrong = [{"step": "PostHook", "hook": "not-a-hook"}]
    r = await api(planner, "PATCH", f"/plans/{plan['id']}", json={"hooks": wrong})
    assert r.status_code == 422, r.text
    assert loc(r) == [["body", "hooks", 0, "hook"]]
    frozen = await start_and_capture(planner, plan["id"])
    by_name = {v["name"]: v for v in frozen["vms"]}
    a, b, c = by_name["rerun-a"], by_name["rerun-b"], by_name["db-1"]
    assert [(h["step"], h["hook"]["name"]) for h in a["hooks"]] == [
        ("PreHook", pre["name"]),
        ("PostHook", post["name"]),
    ]
    assert a["hooks"][0]["hook"]["playbook"] == PLAYBOOK
    assert a["hooks"][1]["hook"]["deadline_seconds"] == 45
    assert a["hooks"][1]["hook"]["retries"] == 1
    assert [(h["step"], h["hook"]["name"]) for h in b["hooks"]] == [
        ("PreHook", other["name"]),
        ("PostHook", post["name"]),
    ]
    assert c["hooks"] == []
    assert c["source"] is None  # no hooks: the frozen plan stays as small as it was
    assert a["source"]["name"] == "rerun-a"
    assert a["source"]["id"] == a["vm_id"]
    steps = {
        v["name"]: [
            s["name"]
            for s in (await get(planner, f"/plans/{plan['id']}/vms/{v['vm_id']}"))["pipeline"]
        ]
        for v in frozen["vms"]
    }
    assert steps["rerun-a"] == [
        "Initialize", "PreHook", "PowerOffSource", "DiskAllocation", "DiskTransfer",
        "VirtualMachineCreation", "PostHook", "Cleanup",
    ]  # fmt: skip
    assert "PreHook" not in steps["db-1"]
    assert "PostHook" not in steps["db-1"]
