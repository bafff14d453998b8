"""Warm migration, as its user sees it: a running VM whose disks keep changing is copied while
it runs, and arrives byte-exact as it was at its power-off, which comes only at the cutover.

The pieces are real: the orchestrator and controller processes, the simulated cluster whose
kubelet runs the real populators, the oVirt engine with real incremental backups (qemu
persistent bitmaps served by the real imageio daemon) and guests writing into their disks
while they run. Precopies come every ``INTERVAL`` seconds
(``HOIST_ORCHESTRATOR_PRECOPY_INTERVAL_SECONDS``: a plan's interval is whole minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from shared import catalog
from shared import payloads as p
from shared.devservices import DevServices
from sim.ovirt import scenario
from sim.ovirt.engine import Engine
from sim.ovirt.scenario import Fault
from tests.conftest import eventually
from tests.orchestrator.conftest import Events
from tests.orchestrator.pipelines import (
    FINAL,
    NAMESPACE,
    ControllerProcess,
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

INTERVAL = 1.5
WARM = {"format": "cow", "backup": "incremental"}


def _vm(name: str, *sizes: str, writes: str = "512KiB") -> dict[str, Any]:
    return {
        "name": name,
        "guest_writes": writes,
        "disks": [_disk(f"{name}-{i}", size, **WARM) for i, size in enumerate(sizes)],
    }


SCENARIO: dict[str, Any] = {
    "vms": [
        _vm("warm-a", "24MiB", "16MiB"),
        _vm("warm-kill", "24MiB"),
        _vm("warm-lost", "16MiB"),
        _vm("warm-cut", "32MiB"),
        _vm("warm-flaky", "16MiB"),
    ],
    "faults": [
        # A precopy of warm-cut lasts long enough for the cutover to come in the middle.
        {"kind": "bandwidth", "disk": "warm-cut-0", "bytes_per_second": "2MiB"},
    ],
}


ORCHESTRATOR_ENV = {"HOIST_ORCHESTRATOR_PRECOPY_INTERVAL_SECONDS": str(INTERVAL)}


@pytest.fixture(scope="module")
async def engine(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Engine]:
    inv, faults = scenario.from_dict(SCENARIO)
    async with Engine(inv, faults, tmp_path_factory.mktemp("engine")) as e:
        yield e


@pytest.fixture(scope="module")
async def source(engine: Engine, kube: client.ApiClient) -> p.ProviderRef:
    return await ovirt_source(engine, kube)


async def start_warm(
    engine: Engine,
    source: p.ProviderRef,
    servers: DevServices,
    prefix: str,
    kube: client.ApiClient,
    name: str,
    pre_hook: p.HookSpec | None = None,
) -> tuple[p.PlannedVm, p.PlanStarted, LastSeen]:
    """A warm plan of one VM (with a pre hook, if given) started, and its CRs watched."""
    vm = planned(engine, name)
    if pre_hook is not None:
        vm = vm.model_copy(update={"hooks": [p.PlannedHook(step=p.Step.PRE_HOOK, hook=pre_hook)]})
    plan = warm_plan(source, [vm])
    async with publisher(servers, prefix) as bus:
        await start_plan(bus, plan)
    return vm, plan, LastSeen(kube, vm.vm_id)


def warm_plan(source: p.ProviderRef, vms: list[p.PlannedVm]) -> p.PlanStarted:
    """A warm plan whose cutover is an hour away: it precopies until a test moves it."""
    return plan_of(
        source,
        vms,
        migration_type=p.MigrationType.WARM,
        cutover=datetime.now(UTC) + timedelta(hours=1),
    )


async def cut_over(servers: DevServices, prefix: str, plan: p.PlanStarted, rev: int = 1) -> None:
    async with publisher(servers, prefix) as bus:
        await bus.publish(
            catalog.PLAN_CUTOVER_CHANGED,
            p.PlanCutoverChanged(
                plan_id=plan.plan_id,
                migration_id=plan.migration_id,
                cutover=datetime.now(UTC),
                revision=rev,
            ),
        )


async def precopy(svc: ServiceProcess, plan: p.PlanStarted, vm_id: str) -> dict[str, Any]:
    """``detail.precopy`` of the VM's WarmPrecopy step ({} before it runs)."""
    state = await vm_state(svc, plan, vm_id)
    for step in state.get("pipeline") or []:
        if step.get("name") == "WarmPrecopy":
            return dict((step.get("detail") or {}).get("precopy") or {})
    return {}


async def precopies_done(
    svc: ServiceProcess, plan: p.PlanStarted, vm_id: str, n: int, within: float = 180
) -> None:
    last: dict[str, Any] = {}

    async def done() -> bool:
        last.clear()
        last.update(await vm_state(svc, plan, vm_id))
        if last.get("phase") in FINAL:
            raise AssertionError(f"VM {vm_id} ended before {n} precopies: {summary(last)}")
        now = await precopy(svc, plan, vm_id)
        return int(now.get("number") or 0) >= n and not now.get("running")

    try:
        await eventually(done, within=within, every=0.3, what=f"{n} precopies of VM {vm_id}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last: {summary(last)}\n{svc.logs()[-4000:]}") from None


def summary(state: dict[str, Any]) -> Any:
    """The VM's phase, error and each step's state and note: what a failure message needs."""
    steps = [
        (x["name"], x["state"], (x.get("detail") or {}).get("note"), x.get("error"))
        for x in state.get("pipeline") or []
    ]
    return (state.get("phase"), state.get("error"), steps)


async def populators(api: client.ApiClient, vm_id: str) -> list[dict[str, Any]]:
    found = await client.CustomObjectsApi(api).list_namespaced_custom_object(
        "hoist.io",
        "v1beta1",
        NAMESPACE,
        "ovirtvolumepopulators",
        label_selector=f"hoist.io/vm={vm_id}",
    )
    return list(found["items"])


class LastSeen:
    """The VM's populator CRs as last seen while it ran (Cleanup deletes them at the end)."""

    def __init__(self, api: client.ApiClient, vm_id: str) -> None:
        self.api, self.vm_id = api, vm_id
        self.crs: dict[str, dict[str, Any]] = {}
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            for cr in await populators(self.api, self.vm_id):
                self.crs[cr["metadata"]["name"]] = cr
            await asyncio.sleep(0.1)

    async def stop(self) -> list[dict[str, Any]]:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return list(self.crs.values())


def powered_off_at(engine: Engine, vm_id: str) -> float:
    """When the source VM first went down (its power timeline, as the engine kept it)."""
    for change in engine.inv.vms[vm_id].power.changes:
        if change.state != "up":
            return float(change.at)
    raise AssertionError(f"VM {vm_id} was never powered off")


async def assert_arrived(engine: Engine, api: client.ApiClient, vm: p.PlannedVm) -> None:
    """Every disk byte-exact in its claim: the image as the powered-off guest left it."""
    for disk in vm.disks:
        copy = await target_file(api, NAMESPACE, disk.pvc_name)
        await assert_same_image(engine, engine.inv.disks[disk.disk_id], copy)


def assert_succeeded(done: dict[str, Any]) -> None:
    assert done["phase"] == "Succeeded", summary(done)


def assert_backups_closed(engine: Engine, vm_id: str) -> None:
    """Every backup Hoist started ended (finalized), and no checkpoint of it is left."""
    backups = [b for b in engine.inv.backups.values() if b.vm_id == vm_id]
    assert backups, "no backup was made"
    assert all(b.phase in ("succeeded", "failed") for b in backups), [
        (b.id, b.phase) for b in backups
    ]
    left = [c.id for c in engine.inv.checkpoints.values() if c.vm_id == vm_id]
    assert left == [], left


async def test_a_changing_vm_is_copied_while_it_runs_and_arrives_as_it_was_at_power_off(
    engine: Engine,
    source: p.ProviderRef,
    running: tuple[ServiceProcess, ControllerProcess],
    servers: DevServices,
    prefix: str,
    kube: client.ApiClient,
    events: Events,
) -> None:
    svc, _ = running
    hook = p.HookSpec(name="drain", image="registry.example/hoist/hook-ok:1")
    vm, plan, seen = await start_warm(engine, source, servers, prefix, kube, "warm-a", hook)
    await precopies_done(svc, plan, vm.vm_id, 2)
    # The pre hook waits for the cutover: not before the first precopy, nor between them.
    jobs = await client.BatchV1Api(kube).list_namespaced_job(
        NAMESPACE, label_selector=f"hoist.io/vm={vm.vm_id}"
    )
    assert jobs.items == []
    # The guest keeps writing (its rate) and changes more now, after the last precopy.
    for disk in vm.disks:
        await engine.write_guest(disk.disk_id, 1 << 20)
        await engine.write_guest(disk.disk_id, 256 << 10, zero=True)
    assert engine.inv.vms[vm.vm_id].status == "up"  # no downtime before the cutover
    cutover = datetime.now(UTC).timestamp()
    await cut_over(servers, prefix, plan)
    done = await wait_vm(svc, plan, vm.vm_id, within=180)
    assert_succeeded(done)
    assert powered_off_at(engine, vm.vm_id) >= cutover
    await assert_arrived(engine, kube, vm)
    # Each disk's CR kept its stages: a full first one, then smaller incremental ones.
    crs = await seen.stop()
    assert len(crs) == len(vm.disks), crs
    for cr in crs:
        stages = cr["status"]["stages"]
        assert len(stages) >= 3, stages
        assert stages[0]["mode"] == "full"
        assert all(s["mode"] == "incremental" for s in stages[1:]), stages
        assert all(s["startedAt"] <= s["endedAt"] for s in stages), stages
        assert stages[-1]["bytes"] < stages[0]["bytes"], stages
        assert cr["status"]["phase"] == "Succeeded"
        assert cr["spec"]["finalCheckpoint"] is True
    assert_backups_closed(engine, vm.vm_id)
    steps = {s["name"]: s for s in done["pipeline"]}
    assert [s["name"] for s in done["pipeline"]] == [
        "Initialize",
        "WarmPrecopy",
        "PreHook",
        "PowerOffSource",
        "FinalCopy",
        "VirtualMachineCreation",
        "Cleanup",
    ]
    # At the cutover, after the last precopy, the source still up until the hook ended.
    hooked = steps["PreHook"]
    assert hooked["detail"]["outcome"] == "Succeeded", hooked
    assert datetime.fromisoformat(hooked["startedAt"]).timestamp() >= cutover
    assert datetime.fromisoformat(hooked["completedAt"]).timestamp() <= powered_off_at(
        engine, vm.vm_id
    )
    history = steps["FinalCopy"]["detail"]["precopies"]
    assert [h["number"] for h in history][-1] == "final", history
    # Each precopy is told as it ends (migration.vm.step): its number, bytes, next run.
    told = [
        e["data"]["detail"]["precopy"]
        for e in events.of("io.hoist.migration.vm.step", vm.vm_id)
        if e["data"]["step"] == "WarmPrecopy" and "precopy" in (e["data"].get("detail") or {})
    ]
    ended = {t["number"]: t for t in told if not t["running"]}
    assert {1, 2} <= set(ended), told
    assert all(ended[n]["bytes"] > 0 and ended[n]["nextAt"] for n in (1, 2)), ended


def _populator_pids(disk_ids: list[str]) -> list[int]:
    """Populator processes (run by the simulated kubelet) copying one of these disks."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        line = b" ".join(argv)
        ours = any(f"--disk-id={d}".encode() in line for d in disk_ids)
        if b"services.populators" in line and b"--backup-id" in line and ours:
            pids.append(int(entry.name))
    return pids


async def test_a_lost_checkpoint_means_a_full_copy_and_the_vm_still_arrives_exact(
    engine: Engine,
    source: p.ProviderRef,
    running: tuple[ServiceProcess, ControllerProcess],
    servers: DevServices,
    prefix: str,
    kube: client.ApiClient,
) -> None:
    svc, _ = running
    vm, plan, seen = await start_warm(engine, source, servers, prefix, kube, "warm-lost")
    await precopies_done(svc, plan, vm.vm_id, 1)
    # Someone removes the checkpoint out of band (or reverts a snapshot): it is gone.
    for cp in [c for c in engine.inv.checkpoints.values() if c.vm_id == vm.vm_id]:
        await engine.lose_checkpoint(cp.id)
    await engine.write_guest(vm.disks[0].disk_id, 1 << 20, zero=True)
    await precopies_done(svc, plan, vm.vm_id, 2)
    await cut_over(servers, prefix, plan)
    done = await wait_vm(svc, plan, vm.vm_id, within=180)
    assert_succeeded(done)
    await assert_arrived(engine, kube, vm)
    (cr,) = await seen.stop()
    modes = [s["mode"] for s in cr["status"]["stages"]]
    assert modes[:2] == ["full", "full"], modes  # the second precopy started over
    assert_backups_closed(engine, vm.vm_id)


async def test_a_cutover_brought_forward_during_a_precopy_comes_once_it_ends(
    engine: Engine,
    source: p.ProviderRef,
    running: tuple[ServiceProcess, ControllerProcess],
    servers: DevServices,
    prefix: str,
    kube: client.ApiClient,
) -> None:
    """The source stays up until the precopy in flight has copied its stage: the backup's
    disks are locked while it is read, and the final copy is then the smaller."""
    svc, _ = running
    vm, plan, seen = await start_warm(engine, source, servers, prefix, kube, "warm-cut")
    await precopies_done(svc, plan, vm.vm_id, 1)
    # A big change, so the next precopy copies for a while (the disk is throttled).
    await engine.write_guest(vm.disks[0].disk_id, 8 << 20, zero=False)

    async def second_running() -> bool:
        now = await precopy(svc, plan, vm.vm_id)
        return bool(now.get("running") and now.get("number") == 2)

    await eventually(second_running, within=60, every=0.1, what="the second precopy running")
    await cut_over(servers, prefix, plan)
    done = await wait_vm(svc, plan, vm.vm_id, within=180)
    assert_succeeded(done)
    await assert_arrived(engine, kube, vm)
    (cr,) = await seen.stop()
    stages = cr["status"]["stages"]
    assert [c["current"] for c in cr["spec"]["checkpoints"]] == [s["current"] for s in stages]
    assert len(stages) == 3, stages  # precopy 1, precopy 2 (finished first), the final copy
    second_done = datetime.fromisoformat(stages[1]["endedAt"]).timestamp()
    assert powered_off_at(engine, vm.vm_id) >= second_done
    assert stages[2]["bytes"] < stages[1]["bytes"], stages
    assert_backups_closed(engine, vm.vm_id)


async def test_refused_failed_and_interrupted_backups_are_made_again(
    engine: Engine,
    source: p.ProviderRef,
    running: tuple[ServiceProcess, ControllerProcess],
    servers: DevServices,
    prefix: str,
    kube: client.ApiClient,
) -> None:
    """The engine refuses a backup, fails one, and restarts while one is read: each is
    finalized and a new one started, and the VM still arrives byte-exact."""
    svc, _ = running
    vm, plan, seen = await start_warm(engine, source, servers, prefix, kube, "warm-flaky")
    disk = engine.inv.disks[vm.disks[0].disk_id]
    await precopies_done(svc, plan, vm.vm_id, 1)
    engine.add_fault(Fault("backup_refused", disk=disk.name, count=1, status=409))
    engine.add_fault(Fault("backup_failed", disk=disk.name, count=1))
    engine.add_fault(Fault("engine_restart", disk=disk.name, count=1, seconds=2.0))
    await engine.write_guest(disk.id, 2 << 20)
    # Three backups lost, each retried after a backoff, one across the engine's restart
    # (the orchestrator's calls wait 10 s after an unreachable source): time on a busy CI.
    await precopies_done(svc, plan, vm.vm_id, 2, within=360)
    assert (await precopy(svc, plan, vm.vm_id))["attempt"] >= 2
    await cut_over(servers, prefix, plan)
    done = await wait_vm(svc, plan, vm.vm_id, within=180)
    assert_succeeded(done)
    await assert_arrived(engine, kube, vm)
    assert_backups_closed(engine, vm.vm_id)
    await seen.stop()


# Last in the module: it kills the module's orchestrator (its successor stops with the test).
async def test_a_killed_orchestrator_and_populator_resume_without_copying_a_stage_twice(
    engine: Engine,
    source: p.ProviderRef,
    running: tuple[ServiceProcess, ControllerProcess],
    env: dict[str, str],
    servers: DevServices,
    prefix: str,
    kube: client.ApiClient,
    tmp_path: Path,
) -> None:
    first, _ = running
    vm, plan, seen = await start_warm(engine, source, servers, prefix, kube, "warm-kill")
    await precopies_done(first, plan, vm.vm_id, 1)
    # A populator killed in the middle of a stage: its pod fails, another copies the stage.
    await engine.write_guest(vm.disks[0].disk_id, 4 << 20)

    async def copying() -> bool:
        return bool(_populator_pids([d.disk_id for d in vm.disks]))

    await eventually(copying, within=60, every=0.05, what="a stage's populator running")
    for pid in _populator_pids([d.disk_id for d in vm.disks]):
        os.kill(pid, signal.SIGKILL)
    await precopies_done(first, plan, vm.vm_id, 3)
    # The orchestrator killed between stages; a second replica takes the VM over.
    second = orchestrator(env, tmp_path)
    await second.start()
    await second.wait_ready(60)
    assert first.proc is not None
    first.proc.send_signal(signal.SIGKILL)
    await first.proc.wait()
    try:
        await precopies_done(second, plan, vm.vm_id, 4)
        await cut_over(servers, prefix, plan)
        done = await wait_vm(second, plan, vm.vm_id, within=180)
        assert_succeeded(done)
        await assert_arrived(engine, kube, vm)
        (cr,) = await seen.stop()
        copied = [s["current"] for s in cr["status"]["stages"]]
        assert len(copied) == len(set(copied)), copied  # no stage copied twice
        assert [s["mode"] for s in cr["status"]["stages"]].count("full") == 1
        assert_backups_closed(engine, vm.vm_id)
    finally:
        await second.terminate()
