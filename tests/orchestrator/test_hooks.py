"""PreHook and PostHook through the real orchestrator, controller, cluster (its Job
controller included) and engine, with this repository's small hook image
(``tools.hookimage``; ``pipelines.HOOK_IMAGES`` gives it a behaviour per image name).

What a user counts on: the pre hook runs before the source is powered off and sees the VM
(as the inventory knew it) and its target, the post hook after the target VM exists; a
hook's log is kept after its Job is gone; a failing or timed-out hook fails the VM and a
failed pre hook leaves the source running; a cancel stops a running hook (its Job goes);
an orchestrator killed while a hook runs adopts the Job: the hook runs once, not twice.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from shared import hooks
from shared import payloads as p
from shared.devservices import DevServices
from sim.ovirt import scenario
from sim.ovirt.engine import Engine
from tests.conftest import eventually
from tests.orchestrator.pipelines import (
    NAMESPACE,
    ControllerProcess,
    cancel,
    killed_mid_step,
    ovirt_source,
    plan_of,
    planned,
    publisher,
    start_plan,
    wait_vm,
)
from tests.orchestrator.pipelines import ovirt_disk as _disk
from tools.processes import ServiceProcess

NAMES = ("hookok", "hookfail", "hooktimeout", "hookpull", "hookcancel", "hookcrash")
SCENARIO: dict[str, Any] = {
    "vms": [{"name": n, "status": "up", "disks": [_disk(f"{n}-root")]} for n in NAMES]
}


@pytest.fixture(scope="module")
async def engine(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Engine]:
    inv, faults = scenario.from_dict(SCENARIO)
    async with Engine(inv, faults, tmp_path_factory.mktemp("engine")) as e:
        yield e


@pytest.fixture(scope="module")
async def source(engine: Engine, kube: client.ApiClient) -> p.ProviderRef:
    return await ovirt_source(engine, kube)


def hooked(engine: Engine, name: str, **by_step: p.HookSpec) -> p.PlannedVm:
    """The VM with hooks as the planner freezes it: the hooks, and the source VM as the
    inventory knew it (here: from the engine simulator)."""
    vm = planned(engine, name)
    src = next(v for v in engine.inv.vms.values() if v.name == name)
    steps = {"pre": p.Step.PRE_HOOK, "post": p.Step.POST_HOOK}
    return vm.model_copy(
        update={
            "hooks": [p.PlannedHook(step=steps[k], hook=h) for k, h in by_step.items()],
            "source": {"id": src.id, "name": src.name, "data": {"status": src.status}},
        }
    )


def spec(kind: str, **kw: Any) -> p.HookSpec:
    return p.HookSpec(name=f"{kind}-hook", image=f"registry.example/hoist/hook-{kind}:1", **kw)


def step(state: dict[str, Any], name: str) -> dict[str, Any]:
    found = next((s for s in state.get("pipeline") or [] if s["name"] == name), None)
    assert found is not None, (name, state)
    return dict(found)


def source_status(engine: Engine, vm_id: str) -> str:
    return str(engine.inv.vms[vm_id].status)


async def hook_objects(api: client.ApiClient, vm_id: str) -> tuple[list[Any], list[Any]]:
    selector = f"hoist.io/vm={vm_id},{hooks.HOOK}"
    jobs = await client.BatchV1Api(api).list_namespaced_job(NAMESPACE, label_selector=selector)
    pods = await client.CoreV1Api(api).list_namespaced_pod(NAMESPACE, label_selector=selector)
    maps = await client.CoreV1Api(api).list_namespaced_config_map(
        NAMESPACE, label_selector=selector
    )
    return list(jobs.items), [*pods.items, *maps.items]


async def test_hooks_run_around_the_vm_and_fail_it_when_they_fail(
    engine: Engine,
    kube: client.ApiClient,
    source: p.ProviderRef,
    running: tuple[ServiceProcess, ControllerProcess],
    servers: DevServices,
    prefix: str,
) -> None:
    svc, _ = running
    ok = hooked(engine, "hookok", pre=spec("ok"), post=spec("ok"))
    bad = hooked(engine, "hookfail", pre=spec("fail", retries=1))
    late = hooked(engine, "hooktimeout", pre=spec("hang", deadline_seconds=5))
    pull = hooked(engine, "hookpull", pre=spec("missing", deadline_seconds=8))  # no such image
    plan = plan_of(source, [ok, bad, late, pull])
    async with publisher(servers, prefix) as bus:
        await start_plan(bus, plan)

    state = await wait_vm(svc, plan, ok.vm_id, within=180)
    assert state["phase"] == "Succeeded", state
    assert [s["name"] for s in state["pipeline"]] == [
        "Initialize", "PreHook", "PowerOffSource", "DiskAllocation", "DiskTransfer",
        "VirtualMachineCreation", "PostHook", "Cleanup",
    ]  # fmt: skip
    pre, post = step(state, "PreHook"), step(state, "PostHook")
    assert pre["state"] == post["state"] == "Completed"
    assert pre["detail"]["outcome"] == "Succeeded"
    log = pre["detail"]["log"]
    # The hook saw the VM as the inventory knew it (running: before PowerOffSource) and
    # its target; its log is kept after the Job is gone.
    assert f"source VM hookok ({ok.vm_id}), status up" in log, log
    assert f"target VM {NAMESPACE}/{ok.target_name}" in log, log
    assert "at PreHook of plan" in log
    assert "exit code 0" in log
    assert "at PostHook of plan" in post["detail"]["log"]
    assert await hook_objects(kube, ok.vm_id) == ([], [])

    state = await wait_vm(svc, plan, bad.vm_id, within=120)
    assert state["phase"] == "Failed", state
    assert state["error"]["reason"] == "HookFailed"
    assert "failed after 2 tries" in state["error"]["message"]
    failed = step(state, "PreHook")
    assert failed["state"] == "Failed"
    assert failed["detail"]["log"].count(": Error, exit code 3 ---") == 2  # each try, its log
    assert "hook: failing with exit code 3" in failed["detail"]["log"]
    assert "PowerOffSource" not in [s["name"] for s in state["pipeline"]]  # never reached
    assert source_status(engine, bad.vm_id) == "up"  # the source is untouched
    assert await hook_objects(kube, bad.vm_id) == ([], [])

    state = await wait_vm(svc, plan, late.vm_id, within=120)
    assert state["phase"] == "Failed", state
    assert state["error"]["reason"] == "HookTimeout"
    assert "deadline of 5 s" in state["error"]["message"]
    assert "working for 600 s" in step(state, "PreHook")["detail"]["log"]
    assert source_status(engine, late.vm_id) == "up"

    # A pod that never started counts against the deadline too, and says why it waited.
    state = await wait_vm(svc, plan, pull.vm_id, within=120)
    assert state["error"]["reason"] == "HookTimeout", state
    assert re.search(
        r": Pending \((ErrImagePull|ImagePullBackOff)\) ---",
        step(state, "PreHook")["detail"]["log"],
    )


async def test_cancel_stops_a_running_hook(
    engine: Engine,
    kube: client.ApiClient,
    source: p.ProviderRef,
    running: tuple[ServiceProcess, ControllerProcess],
    servers: DevServices,
    prefix: str,
) -> None:
    svc, _ = running
    vm = hooked(engine, "hookcancel", pre=spec("hang"))
    plan = plan_of(source, [vm])
    async with publisher(servers, prefix) as bus:
        await start_plan(bus, plan)

        async def hook_runs() -> bool:
            jobs, _ = await hook_objects(kube, vm.vm_id)
            return bool(jobs) and bool((jobs[0].status and jobs[0].status.active) or 0)

        await eventually(hook_runs, within=120, what="the hook's Job running")
        await cancel(bus, plan)
    state = await wait_vm(svc, plan, vm.vm_id, within=60)
    assert state["phase"] == "Canceled", state
    assert step(state, "PreHook")["state"] == "Canceled"

    async def gone() -> bool:
        return await hook_objects(kube, vm.vm_id) == ([], [])

    await eventually(gone, within=30, what="the hook's Job, pod and ConfigMap gone")
    assert source_status(engine, vm.vm_id) == "up"


async def test_killed_orchestrator_adopts_the_running_hook(
    engine: Engine,
    kube: client.ApiClient,
    source: p.ProviderRef,
    running: tuple[ServiceProcess, ControllerProcess],
    env: dict[str, str],
    servers: DevServices,
    prefix: str,
    tmp_path: Path,
) -> None:
    first, _ = running
    vm = hooked(engine, "hookcrash", post=spec("slow"))  # 4 s: time to kill meanwhile
    plan = plan_of(source, [vm])

    async def jobs() -> set[str]:
        found, _ = await hook_objects(kube, vm.vm_id)
        return {j.metadata.uid for j in found}

    async with publisher(servers, prefix) as bus:
        await start_plan(bus, plan)
    state, uids = await killed_mid_step(first, env, tmp_path, plan, vm.vm_id, "PostHook", jobs)
    assert state["phase"] == "Succeeded", state
    assert len(uids) == 1, uids  # adopted, not made again
    done = step(state, "PostHook")
    assert done["detail"]["outcome"] == "Succeeded"
    assert done["detail"]["log"].count("--- pod ") == 1  # the hook ran once
    assert "working for 4 s" in done["detail"]["log"]
