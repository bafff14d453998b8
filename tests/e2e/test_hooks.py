"""Hooks end to end, through the APIs and the CLI only: hooks defined at the planner, a
plan running a pre hook on every VM and a post hook that fails on one, the hooks' logs in
the planner's status and ``hoist plans logs``, and a re-run that runs the hooks again only
for the VM that did not succeed (with the hook as it is now, not as it was)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.cli.conftest import cli_env, run_cli
from tests.e2e.conftest import (
    create_plan,
    start,
    svc,
    vm_view,
    vms_of,
    wait_migration,
    wait_startable,
)
from tests.inventory.conftest import api, unique
from tools.stack import FAILING_HOOK_IMAGE, HOOK_IMAGE, Stack


async def make_hook(stack: Stack, image: str) -> str:
    name = unique("hook")
    r = await api(svc(stack, "planner"), "POST", "/hooks", json={"name": name, "image": image})
    assert r.status_code == 201, r.text
    return name


def step(view: dict[str, Any], name: str) -> dict[str, Any]:
    found = next((s for s in view["pipeline"] if s["name"] == name), None)
    assert found is not None, (name, view)
    return dict(found)


async def test_hooks_run_per_vm_keep_their_logs_and_run_again_on_a_rerun(
    stack: Stack, providers: dict[str, str], maps: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    engine = stack.engine
    assert engine is not None
    drain = await make_hook(stack, HOOK_IMAGE)
    smoke = await make_hook(stack, FAILING_HOOK_IMAGE)
    plan = await create_plan(
        stack, providers, maps, "ovirt",
        ["hooked-a", {"name": "hooked-b", "hooks": [{"step": "PostHook", "hook": smoke}]}],
        hooks=[{"step": "PreHook", "hook": drain}],
    )  # fmt: skip
    first = await start(stack, plan)
    ended = await wait_migration(stack, plan, first["id"], within=300)
    assert (ended["vms"]["succeeded"], ended["vms"]["failed"]) == (1, 1), ended
    views = await vms_of(stack, plan)
    a = await vm_view(stack, plan, views["hooked-a"]["id"])
    b = await vm_view(stack, plan, views["hooked-b"]["id"])
    # The planner's status carries each hook's outcome and log.
    pre = step(a, "PreHook")
    assert pre["state"] == "Completed"
    assert "status up" in pre["detail"]["log"], pre  # the source ran when the hook did
    assert f"target VM migrated/{a['targetName']}" in pre["detail"]["log"]
    assert b["phase"] == "Failed"
    assert b["error"]["reason"] == "HookFailed", b["error"]
    assert step(b, "PostHook")["state"] == "Failed"
    assert step(b, "PreHook")["state"] == "Completed"
    # The failed post hook's VM is torn down and its source powered on again.
    b_id = views["hooked-b"]["id"]
    assert engine.inv.vms[b_id].status == "up"

    env = cli_env(tmp_path, **stack.cli_env())
    told = await run_cli(["plans", "logs", plan["name"]], env)
    assert told.code == 0, told
    assert "PostHook: HookFailed" in told.stdout, told
    assert "hook: failing with exit code 1" in told.stdout, told
    assert f"PreHook hook {drain}: Completed" in told.stdout, told
    shown = await run_cli(["plans", "logs", plan["name"], "--vm", "hooked-a", "-o", "json"], env)
    (report,) = shown.json()["vms"]
    assert [(h["step"], h["state"]) for h in report["hooks"]] == [("PreHook", "Completed")]

    # The smoke test is fixed; the re-run takes the hook as it is now, for hooked-b only.
    r = await api(svc(stack, "planner"), "PATCH", f"/hooks/{smoke}", json={"image": HOOK_IMAGE})
    assert r.status_code == 200, r.text
    await wait_startable(stack, plan)
    second = await start(stack, plan)
    assert (second["vms"], second["skipped"]) == (1, 1), second
    ended = await wait_migration(stack, plan, second["id"], within=300)
    assert ended["phase"] == "Succeeded", ended
    again = await vm_view(stack, plan, b_id)
    assert step(again, "PreHook")["state"] == "Completed"  # run again, under a new Job
    assert step(again, "PreHook")["detail"]["job"] != step(b, "PreHook")["detail"]["job"]
    assert step(again, "PostHook")["detail"]["outcome"] == "Succeeded"
