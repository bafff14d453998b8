"""ConvertGuest through the real orchestrator, controller, cluster and engine, with a fake
conversion image (``tests.orchestrator.fakeconverter``: the real one takes minutes and is
tested in ``tests/converter``).

What a user counts on: a VM with conversion gets one pod with all its volumes before its
VirtualMachine exists, the outcome and the pod's log are kept after the pod is gone, a
failed conversion fails the VM with the converter's reason, a VM without conversion has no
such step, and an orchestrator killed mid-conversion resumes without a second pod.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from shared import conversion
from shared import payloads as p
from shared.devservices import DevServices
from sim.ovirt import scenario
from sim.ovirt.engine import Engine
from tests.orchestrator.pipelines import (
    NAMESPACE,
    ControllerProcess,
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

SCENARIO: dict[str, Any] = {
    "vms": [
        {"name": "convok", "status": "down", "disks": [_disk("ok-root"), _disk("ok-data")]},
        {"name": "plain", "status": "down", "disks": [_disk("plain-root")]},
        {"name": "convfail", "status": "down", "disks": [_disk("fail-root")]},
        {"name": "convslow", "status": "down", "disks": [_disk("slow-root")]},
    ]
}


@pytest.fixture(scope="module")
async def engine(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Engine]:
    inv, faults = scenario.from_dict(SCENARIO)
    async with Engine(inv, faults, tmp_path_factory.mktemp("engine")) as e:
        yield e


@pytest.fixture(scope="module")
async def source(engine: Engine, kube: client.ApiClient) -> p.ProviderRef:
    return await ovirt_source(engine, kube)


def converting(engine: Engine, name: str, **kw: Any) -> p.PlannedVm:
    return planned(engine, name, **kw).model_copy(update={"convert_guest": True})


def step(state: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((s for s in state.get("pipeline") or [] if s["name"] == name), None)


async def conversion_pods(api: client.ApiClient, vm_id: str) -> list[Any]:
    found = await client.CoreV1Api(api).list_namespaced_pod(
        NAMESPACE,
        label_selector=f"{conversion.CONVERSION}={conversion.CONVERSION_VALUE},hoist.io/vm={vm_id}",
    )
    return list(found.items)


async def test_conversion_runs_once_between_disks_and_vm_and_keeps_its_log(
    engine: Engine,
    kube: client.ApiClient,
    source: p.ProviderRef,
    running: tuple[ServiceProcess, ControllerProcess],
    servers: DevServices,
    prefix: str,
) -> None:
    svc, _ = running
    ok = converting(engine, "convok", storage_class="standard-wffc", mode="Block")
    plain = planned(engine, "plain")
    fail = converting(engine, "convfail")
    plan = plan_of(source, [ok, plain, fail])
    async with publisher(servers, prefix) as bus:
        await start_plan(bus, plan)

    state = await wait_vm(svc, plan, ok.vm_id, within=180)
    assert state["phase"] == "Succeeded", state
    names = [s["name"] for s in state["pipeline"]]
    at = names.index("ConvertGuest")
    assert names[at - 1 : at + 2] == ["DiskTransfer", "ConvertGuest", "VirtualMachineCreation"]
    done = step(state, "ConvertGuest")
    assert done is not None
    assert done["state"] == "Completed", done
    detail = done["detail"]
    assert detail["outcome"] == "Succeeded"
    assert detail["os"] == {"distro": "debian"}
    # Both Block claims were attached at the contract's paths, in the VM's order.
    assert "disks ['Block', 'Block']" in detail["log"], detail["log"]
    assert await conversion_pods(kube, ok.vm_id) == []  # deleted once recorded

    state = await wait_vm(svc, plan, plain.vm_id, within=120)
    assert state["phase"] == "Succeeded", state
    assert step(state, "ConvertGuest") is None  # not converted: no such step at all

    state = await wait_vm(svc, plan, fail.vm_id, within=120)
    assert state["phase"] == "Failed", state
    assert state["error"]["reason"] == "ConversionFailed"
    assert "inspection could not detect the source guest" in state["error"]["message"]
    assert state["error"]["permanent"] is True
    failed = step(state, "ConvertGuest")
    assert failed is not None
    assert failed["state"] == "Failed"
    assert "virt-v2v-in-place: error" in failed["detail"]["log"]
    assert failed["detail"]["pod"].startswith(fail.target_name)


async def test_killed_orchestrator_resumes_the_conversion_without_a_second_pod(
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
    vm = converting(engine, "convslow")
    plan = plan_of(source, [vm])

    async def pods() -> set[str]:
        return {pod.metadata.uid for pod in await conversion_pods(kube, vm.vm_id)}

    async with publisher(servers, prefix) as bus:
        await start_plan(bus, plan)
    # Killed while the (4 s) conversion pod runs.
    state, uids = await killed_mid_step(first, env, tmp_path, plan, vm.vm_id, "ConvertGuest", pods)
    assert state["phase"] == "Succeeded", state
    assert len(uids) == 1, uids  # the restarted step found the pod; it made no second one
    done = step(state, "ConvertGuest")
    assert done is not None
    assert done["detail"]["outcome"] == "Succeeded"
