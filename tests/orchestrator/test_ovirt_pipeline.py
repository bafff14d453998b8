"""Whole oVirt pipelines through the real orchestrator, controller, cluster and engine.

Plans are published as the planner publishes them; the orchestrator powers the source VMs
off, makes the claims and populator CRs, the controller runs the real populator in pods of
the simulated cluster (reading the engine's real imageio), and the VirtualMachine is made
(the simulator's admission checks it against the KubeVirt schema). Every disk is compared
byte for byte with its source.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from kubernetes_asyncio import client

from shared import payloads as p
from shared.devservices import DevServices
from sim.ovirt import scenario
from sim.ovirt.engine import Engine
from tests.conftest import eventually, plain_dsn
from tests.orchestrator.conftest import Events
from tests.orchestrator.pipelines import (
    NAMESPACE,
    ControllerProcess,
    cancel,
    labelled,
    orchestrator,
    ovirt_source,
    plan_of,
    planned,
    publisher,
    start_plan,
    target_file,
    vm_state,
    wait_vm,
)
from tests.orchestrator.pipelines import ovirt_disk as _disk
from tests.populators.ovirt.conftest import assert_same_image
from tools.processes import ServiceProcess

SCENARIO: dict[str, Any] = {
    "networks": [{"name": "prod", "vlan": 100}],
    "vms": [
        {
            "name": "web",
            "firmware": "uefi",
            "cpu": {"sockets": 1, "cores": 2, "threads": 1},
            "memory": "1GiB",
            "nics": [{"network": "prod", "model": "virtio"}],
            "disks": [
                _disk("web-root", "16MiB", format="cow", bootable=True, interface="virtio_scsi"),
                _disk("web-data", interface="virtio"),
            ],
        },
        {"name": "db", "status": "down", "nics": [{"network": "prod"}], "disks": [_disk("db")]},
        {"name": "broken", "nics": [{"network": "prod"}], "disks": [_disk("broken-disk")]},
        {"name": "slow", "nics": [{"network": "prod"}], "disks": [_disk("slow-disk", "24MiB")]},
        {"name": "crash", "nics": [{"network": "prod"}], "disks": [_disk("crash-disk", "24MiB")]},
        *({"name": f"lim-{i}", "disks": [_disk(f"lim-{i}-disk")]} for i in range(4)),
    ],
    "faults": [
        {"kind": "paused_system", "disk": "broken-disk"},
        {"kind": "bandwidth", "disk": "slow-disk", "bytes_per_second": "2MiB"},
        {"kind": "bandwidth", "disk": "crash-disk", "bytes_per_second": "3MiB"},
        *(
            {"kind": "bandwidth", "disk": f"lim-{i}-disk", "bytes_per_second": "8MiB"}
            for i in range(4)
        ),
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


def vm_status(engine: Engine, vm_id: str) -> str:
    return engine.inv.vms[vm_id].status


async def test_two_vms_migrate_byte_exact(
    engine: Engine,
    kube: client.ApiClient,
    source: p.ProviderRef,
    running: tuple[ServiceProcess, ControllerProcess],
    servers: DevServices,
    prefix: str,
    events: Events,
) -> None:
    svc, _ = running
    web = planned(engine, "web", storage_class="standard-wffc", mode="Block")
    db = planned(engine, "db")
    plan = plan_of(source, [web, db])
    async with publisher(servers, prefix) as bus:
        await start_plan(bus, plan)
    for vm in (web, db):
        state = await wait_vm(svc, plan, vm.vm_id, within=180)
        assert state["phase"] == "Succeeded", state
    # Byte for byte, Block and Filesystem, qcow2 and raw.
    for vm in (web, db):
        for d in vm.disks:
            await assert_same_image(
                engine, engine.inv.disks[d.disk_id], await target_file(kube, NAMESPACE, d.pvc_name)
            )
    # The source VM that was up is now down; the one that was down stayed down.
    assert vm_status(engine, web.vm_id) == "down"
    custom = client.CustomObjectsApi(kube)
    target = await custom.get_namespaced_custom_object(
        "kubevirt.io", "v1", NAMESPACE, "virtualmachines", web.target_name
    )
    assert target["spec"]["runStrategy"] == "Always"  # auto: as the source was
    domain = target["spec"]["template"]["spec"]["domain"]
    assert domain["cpu"]["cores"] == 2
    assert "efi" in domain["firmware"]["bootloader"]
    db_vm = await custom.get_namespaced_custom_object(
        "kubevirt.io", "v1", NAMESPACE, "virtualmachines", db.target_name
    )
    assert db_vm["spec"]["runStrategy"] == "Halted"
    # Only the claims and the VM are left, the claims owned by the VM.
    for vm in (web, db):
        left = await labelled(kube, f"hoist.io/vm={vm.vm_id}")
        assert left["pod"] == []
        assert left["secret"] == []
        assert left["ovirtvolumepopulators"] == []
        assert sorted(left["pvc"]) == sorted(d.pvc_name for d in vm.disks)
        for name in left["pvc"]:
            pvc = await client.CoreV1Api(kube).read_namespaced_persistent_volume_claim(
                name, NAMESPACE
            )
            assert pvc.status.phase == "Bound"
            assert [o.kind for o in pvc.metadata.owner_references] == ["VirtualMachine"]
    # Every step was published, in order, and the end.
    steps = [
        e["data"]["step"]
        for e in events.of("io.hoist.migration.vm.step", web.vm_id)
        if e["data"]["state"] == "Completed" and not e["data"].get("task")
    ]
    assert steps == [
        "Initialize",
        "PowerOffSource",
        "DiskAllocation",
        "DiskTransfer",
        "VirtualMachineCreation",
        "Cleanup",
    ]
    finished = events.of("io.hoist.migration.vm.finished", web.vm_id)
    assert [e["data"]["outcome"] for e in finished] == ["Succeeded"]
    assert finished[0]["data"]["target_vm"]["name"] == web.target_name
    pods = {
        e["data"]["pod"]["name"] for e in events.of("io.hoist.populator.pod.started", web.vm_id)
    }
    assert len(pods) == len(web.disks)


async def test_a_populator_failing_four_times_fails_the_vm_with_its_log(
    engine: Engine,
    kube: client.ApiClient,
    source: p.ProviderRef,
    running: tuple[ServiceProcess, ControllerProcess],
    servers: DevServices,
    prefix: str,
) -> None:
    svc, _ = running
    vm = planned(engine, "broken")
    plan = plan_of(source, [vm])
    async with publisher(servers, prefix) as bus:
        await start_plan(bus, plan)
    state = await wait_vm(svc, plan, vm.vm_id, within=240)
    assert state["phase"] == "Failed", state
    assert state["error"]["reason"] == "PopulatorFailed"
    transfer = next(s for s in state["pipeline"] if s["name"] == "DiskTransfer")
    assert transfer["state"] == "Failed"
    (task,) = transfer["tasks"]
    assert task["detail"]["recreations"] == 3
    assert "paused_system" in task["detail"]["log"] or "imageio" in task["detail"]["log"]
    # Left as it was: powered on again, nothing of it in the namespace.
    await eventually(lambda: vm_status(engine, vm.vm_id) == "up", within=30, what="source on again")
    left = await labelled(kube, f"hoist.io/vm={vm.vm_id}")
    assert not any(left.values()), left


async def test_cancel_mid_transfer_removes_everything_and_restores_the_source(
    engine: Engine,
    kube: client.ApiClient,
    source: p.ProviderRef,
    running: tuple[ServiceProcess, ControllerProcess],
    servers: DevServices,
    prefix: str,
) -> None:
    svc, _ = running
    vm = planned(engine, "slow")
    plan = plan_of(source, [vm])
    async with publisher(servers, prefix) as bus:
        await start_plan(bus, plan)
        await wait_vm(svc, plan, vm.vm_id, ("Running",), step="DiskTransfer", within=120)
        await asyncio.sleep(1)  # bytes are moving
        await cancel(bus, plan, [vm.vm_id])
    state = await wait_vm(svc, plan, vm.vm_id, within=120)
    assert state["phase"] == "Canceled", state
    await eventually(lambda: vm_status(engine, vm.vm_id) == "up", within=30, what="source on again")

    async def gone() -> bool:
        return not any((await labelled(kube, f"hoist.io/vm={vm.vm_id}")).values())

    await eventually(gone, within=60, what="the canceled VM's objects deleted")


async def test_killed_orchestrator_resumes_and_creates_nothing_twice(
    engine: Engine,
    kube: client.ApiClient,
    source: p.ProviderRef,
    running: tuple[ServiceProcess, ControllerProcess],
    env: dict[str, str],
    servers: DevServices,
    prefix: str,
    events: Events,
    tmp_path: Path,
) -> None:
    first, _ = running
    vm = planned(engine, "crash", mode="Block")
    plan = plan_of(source, [vm])
    async with publisher(servers, prefix) as bus:
        await start_plan(bus, plan)
    await wait_vm(first, plan, vm.vm_id, ("Running",), step="DiskTransfer", within=120)
    # A second replica takes over once the first is killed mid-step.
    second = orchestrator(env, tmp_path)
    await second.start()
    await second.wait_ready(60)
    assert first.proc is not None
    first.proc.send_signal(signal.SIGKILL)
    await first.proc.wait()
    state = await wait_vm(second, plan, vm.vm_id, within=180)
    assert state["phase"] == "Succeeded", state
    (d,) = vm.disks
    await assert_same_image(
        engine, engine.inv.disks[d.disk_id], await target_file(kube, NAMESPACE, d.pvc_name)
    )
    pods = {e["data"]["pod"]["name"] for e in events.of("io.hoist.populator.pod.started", vm.vm_id)}
    assert len(pods) == 1  # one populator pod: the disk was not allocated twice
    finished = events.of("io.hoist.migration.vm.finished", vm.vm_id)
    assert len({e["id"] for e in finished}) == 1
    # The fixture's process is gone: start it again for the tests after this one.
    await first.start()
    await first.wait_ready(60)
    await second.terminate()


async def test_two_plans_sharing_a_source_keep_its_limit(
    engine: Engine,
    source: p.ProviderRef,
    running: tuple[ServiceProcess, ControllerProcess],
    servers: DevServices,
    database_url: str,
    prefix: str,
) -> None:
    svc, _ = running
    plans = [
        plan_of(
            source,
            [planned(engine, f"lim-{i}"), planned(engine, f"lim-{i + 1}")],
            max_disks_in_flight=1,
            max_disks_in_flight_per_source=1,
        )
        for i in (0, 2)
    ]
    db = await asyncpg.connect(plain_dsn(database_url))
    peaks: list[int] = []
    try:
        async with publisher(servers, prefix) as bus:
            for plan in plans:
                await start_plan(bus, plan)

        async def finished() -> bool:
            # One statement: the disks held at one instant, across both plans.
            held = await db.fetchval(
                "SELECT coalesce(sum(holding), 0) FROM orchestrator.vms WHERE source_provider = $1",
                source.id,
            )
            peaks.append(int(held))
            done = await db.fetchval(
                "SELECT count(*) FROM orchestrator.vms WHERE migration_id = ANY($1::text[])"
                " AND phase IN ('Succeeded', 'Failed', 'Canceled')",
                [plan.migration_id for plan in plans],
            )
            return bool(done == 4)

        await eventually(finished, within=240, what="both plans finished")
    finally:
        await db.close()
    for plan in plans:
        for vm in plan.vms:
            assert (await vm_state(svc, plan, vm.vm_id))["phase"] == "Succeeded"
    assert max(peaks) == 1
