"""A plan's whole life through real NATS: start, the orchestrator's events (sent here as the
orchestrator would, out of order and twice), progress while copying, cancel, re-run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared import catalog
from shared import payloads as p
from shared.bus import Bus
from shared.devservices import DevServices
from shared.settings import NatsSettings
from tests.conftest import eventually
from tests.inventory.conftest import PREFIX, api
from tests.planner.conftest import make_maps, plan_body, post_and_capture, start_and_capture
from tools.processes import ServiceProcess

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def orchestrator(servers: DevServices) -> AsyncIterator[Bus]:
    """The bus as the orchestrator uses it (same installation prefix as the services)."""
    bus = Bus(NatsSettings(url=servers.nats_url, prefix=PREFIX), source="/hoist/orchestrator")
    await bus.connect()
    yield bus
    await bus.drain()


def step(frozen: dict[str, Any], vm: str, name: p.Step, state: p.StepState, t: float,
         **kw: Any) -> p.VmStepChanged:  # fmt: skip
    return p.VmStepChanged(
        plan_id=frozen["plan_id"],
        migration_id=frozen["migration_id"],
        vm_id=vm,
        step=name,
        state=state,
        started_at=T0 + timedelta(seconds=t),
        completed_at=T0 + timedelta(seconds=t + 1) if state is p.StepState.COMPLETED else None,
        **kw,
    )


def finished(frozen: dict[str, Any], vm: str, outcome: p.Outcome, **kw: Any) -> p.VmFinished:
    return p.VmFinished(
        plan_id=frozen["plan_id"],
        migration_id=frozen["migration_id"],
        vm_id=vm,
        outcome=outcome,
        **kw,
    )


async def get(planner: ServiceProcess, path: str) -> dict[str, Any]:
    r = await api(planner, "GET", path)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def validating_keeps_the_phase(planner: ServiceProcess, pid: str, phase: str) -> None:
    """Issue 24: validating a plan never changes what its status says about its migration
    (it turned a finished plan's phase back to Ready). A running plan is not validated."""
    before = await get(planner, f"/plans/{pid}")
    r = await api(planner, "POST", f"/plans/{pid}/validate")
    assert r.status_code == (409 if phase == "Running" else 200), r.text
    after = await get(planner, f"/plans/{pid}")
    assert after["phase"] == before["phase"] == phase
    mig_before, mig_after = before["status"]["migration"], after["status"]["migration"]
    assert (mig_after["id"], mig_after.get("phase")) == (mig_before["id"], mig_before.get("phase"))
    if r.status_code == 200:
        assert r.json()["phase"] == phase
        assert after["validatedAt"] != before["validatedAt"]


async def test_start_progress_outcome_rerun_cancel(
    planner: ServiceProcess,
    providers: dict[str, str],
    orchestrator: Bus,
) -> None:
    maps = await make_maps(planner, providers)
    body = plan_body(providers, maps, [{"name": "rerun-a"}, {"name": "rerun-b"}])
    plan = (await api(planner, "POST", "/plans", json=body)).json()
    assert plan["phase"] == "Ready", plan["problems"]
    pid = plan["id"]
    frozen = await start_and_capture(planner, pid)
    a, b = (v["vm_id"] for v in frozen["vms"])
    disk_a = frozen["vms"][0]["disks"][0]

    # The whole pipeline is there from the start, every step Pending.
    vm = await get(planner, f"/plans/{pid}/vms/{a}")
    assert vm["phase"] == "Pending"
    assert [s["name"] for s in vm["pipeline"]] == [
        "Initialize", "PowerOffSource", "DiskAllocation", "DiskTransfer",
        "VirtualMachineCreation", "Cleanup",
    ]  # fmt: skip

    # Steps arrive out of order and twice; progress comes while copying.
    S, St = p.Step, p.StepState
    events: list[tuple[Any, Any]] = [
        (catalog.VM_STEP_CHANGED, step(frozen, a, S.INITIALIZE, St.COMPLETED, 0)),
        (catalog.VM_STEP_CHANGED, step(frozen, a, S.INITIALIZE, St.RUNNING, 0)),
        (catalog.VM_STEP_CHANGED, step(frozen, a, S.DISK_TRANSFER, St.RUNNING, 5)),
        (catalog.VM_STEP_CHANGED, step(frozen, a, S.DISK_TRANSFER, St.RUNNING, 5,
                                       task=disk_a["disk_id"])),
        (catalog.VM_STEP_CHANGED, step(frozen, b, S.INITIALIZE, St.RUNNING, 0)),
    ]  # fmt: skip
    for spec, data in events + events[:2]:
        await orchestrator.publish(spec, data)
    half = disk_a["size_bytes"] // 2
    await orchestrator.publish(
        catalog.DISK_PROGRESS,
        p.DiskProgress(
            plan_id=pid, migration_id=frozen["migration_id"], vm_id=a,
            disk_id=disk_a["disk_id"], bytes_done=half, bytes_total=disk_a["size_bytes"],
            percent=50.0, rate_bytes_per_second=1e8, eta_seconds=5,
            observed_at=datetime.now(UTC),
        ),
    )  # fmt: skip

    async def copying() -> bool:
        vm = await get(planner, f"/plans/{pid}/vms/{a}")
        transfer = next(s for s in vm["pipeline"] if s["name"] == "DiskTransfer")
        return bool(vm["phase"] == "Running" and transfer["progress"]["completed"] == half)

    await eventually(copying, within=30, what="disk progress through the planner's API")
    await validating_keeps_the_phase(planner, pid, "Running")
    vm = await get(planner, f"/plans/{pid}/vms/{a}")
    init = vm["pipeline"][0]
    assert init["state"] == "Completed"
    assert init["startedAt"] is not None

    # A succeeds, B fails: the plan fails, with its counts.
    await orchestrator.publish(catalog.VM_FINISHED, finished(frozen, a, p.Outcome.SUCCEEDED))
    error = p.ErrorInfo(reason="DiskLocked", message="the disk is locked", permanent=False)
    await orchestrator.publish(
        catalog.VM_FINISHED, finished(frozen, b, p.Outcome.FAILED, error=error)
    )

    async def failed() -> bool:
        return bool((await get(planner, f"/plans/{pid}"))["phase"] == "Failed")

    await eventually(failed, within=30, what="the plan failing")
    await validating_keeps_the_phase(planner, pid, "Failed")
    got = await get(planner, f"/plans/{pid}")
    current = got["status"]["migration"]
    assert current["id"] == frozen["migration_id"]
    listed = await api(planner, "GET", "/plans", params={"phase": "Failed", "limit": 1000})
    mine = next(i for i in listed.json()["items"] if i["id"] == pid)
    assert mine["migration"]["vms"]["succeeded"] == mine["migration"]["vms"]["failed"] == 1
    vm_b = await get(planner, f"/plans/{pid}/vms/{b}")
    assert vm_b["phase"] == "Failed"
    assert vm_b["error"]["reason"] == "DiskLocked"

    # Cancel is refused when nothing runs; a re-run migrates only B.
    assert (await api(planner, "POST", f"/plans/{pid}/cancel")).status_code == 409
    rerun = await start_and_capture(planner, pid)
    assert [v["vm_id"] for v in rerun["vms"]] == [b]
    assert rerun["migration_id"] != frozen["migration_id"]
    migrations = await get(planner, f"/plans/{pid}/migrations")
    newest, first = migrations["items"]
    assert newest["number"] == 2
    assert newest["vms"]["total"] == 1
    assert newest["vms"]["skipped"] == 1
    assert first["phase"] == "Failed"

    # Cancel B (an unknown VM is refused first), and see the request on the bus.
    bad = await api(planner, "POST", f"/plans/{pid}/cancel", json={"vms": ["nope"]})
    assert bad.status_code == 422
    cancel = (
        await post_and_capture(
            planner, f"/plans/{pid}/cancel", f"plan.{pid}.cancel", {"vms": [b], "reason": "test"}
        )
    )[0]["data"]
    assert cancel["vm_ids"] == [b]
    assert cancel["migration_id"] == rerun["migration_id"]
    assert (await get(planner, f"/plans/{pid}/vms/{b}"))["cancelRequested"] is True
    await orchestrator.publish(
        catalog.VM_FINISHED,
        p.VmFinished(plan_id=pid, migration_id=rerun["migration_id"], vm_id=b,
                     outcome=p.Outcome.CANCELED),
    )  # fmt: skip

    async def canceled() -> bool:
        return bool((await get(planner, f"/plans/{pid}"))["phase"] == "Canceled")

    await eventually(canceled, within=30, what="the plan canceled")
    await validating_keeps_the_phase(planner, pid, "Canceled")
    # VM A, migrated by the first run, still shows as succeeded there.
    vm_a = await get(planner, f"/plans/{pid}/vms/{a}")
    assert vm_a["phase"] == "Succeeded"
    assert vm_a["migrationId"] == frozen["migration_id"]
