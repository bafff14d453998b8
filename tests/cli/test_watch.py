"""``hoist plans start``, ``watch``, ``status``, ``cancel`` and ``rerun`` over a migration
the test drives: the orchestrator's step, progress and outcome events are published on
real NATS here (as tests/planner/test_lifecycle.py does), and the real planner projects
them into the status the CLI reads."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from cli.output import size
from shared import catalog
from shared import payloads as p
from shared.bus import Bus
from tests.cli.conftest import Hoist
from tests.conftest import eventually
from tests.inventory.conftest import api, unique
from tests.planner.conftest import NAMESPACE
from tests.planner.test_lifecycle import orchestrator
from tools.processes import ServiceProcess

GIB = 1 << 30
__all__ = ["orchestrator"]  # the fixture: the bus as the orchestrator uses it


class Run:
    """A started migration: its ids, VM ids by name, and each VM's disk ids."""

    def __init__(self, plan: dict[str, Any], vms: dict[str, str], disks: dict[str, list[str]]):
        self.plan_id: str = plan["id"]
        self.migration_id: str = plan["migrationId"]
        self.vms, self.disks = vms, disks

    def step(self, vm: str, step: p.Step, state: p.StepState, task: str | None = None) -> Any:
        return p.VmStepChanged(
            plan_id=self.plan_id, migration_id=self.migration_id, vm_id=self.vms[vm],
            step=step, state=state, task=task, started_at=datetime.now(UTC),
        )  # fmt: skip

    def progress(self, vm: str, disk: str, done: int, total: int) -> Any:
        return p.DiskProgress(
            plan_id=self.plan_id, migration_id=self.migration_id, vm_id=self.vms[vm],
            disk_id=disk, bytes_done=done, bytes_total=total, percent=100 * done / total,
            rate_bytes_per_second=50e6, eta_seconds=7, observed_at=datetime.now(UTC),
        )  # fmt: skip

    def finished(self, vm: str, outcome: p.Outcome, reason: str | None = None) -> Any:
        error = None
        if reason:
            error = p.ErrorInfo(reason=reason, message=f"{reason} (test)", permanent=False)
        return p.VmFinished(
            plan_id=self.plan_id, migration_id=self.migration_id, vm_id=self.vms[vm],
            outcome=outcome, error=error,
        )  # fmt: skip


async def _get(planner: ServiceProcess, path: str) -> Any:
    r = await api(planner, "GET", path)
    assert r.status_code == 200, r.text
    return r.json()


async def _started(planner: ServiceProcess, name: str) -> Run:
    plan = await _get(planner, f"/plans/{name}")
    listed = await _get(planner, f"/plans/{plan['id']}/vms")
    vms = {v["name"]: v["id"] for v in listed["items"]}
    disks: dict[str, list[str]] = {}
    for vm_name, vid in vms.items():
        view = await _get(planner, f"/plans/{plan['id']}/vms/{vid}")
        transfer = next(s for s in view["pipeline"] if s["name"] == "DiskTransfer")
        disks[vm_name] = [t["id"] for t in transfer["tasks"]]
    return Run(plan, vms, disks)


async def _plan(hoist: Hoist, providers: dict[str, str], vms: list[str]) -> str:
    src, dst = providers["ovirt"], providers["cluster"]
    net, store, name = unique("net"), unique("store"), unique("plan")
    await hoist.ok("maps", "create", "network", net, "--source", src, "--target", dst,
                   "--entry", "prod=pod", "--entry", "dmz=multus:blue")  # fmt: skip
    await hoist.ok("maps", "create", "storage", store, "--source", src, "--target", dst,
                   "--entry", "data=standard")  # fmt: skip
    vm_flags = [flag for vm in vms for flag in ("--vm", vm)]
    await hoist.ok("plans", "create", name, "--source", src, "--target", dst, "--namespace",
                   NAMESPACE, "--network-map", net, "--storage-map", store, *vm_flags)  # fmt: skip
    return name


async def test_start_watch_until_success(
    hoist: Hoist, planner: ServiceProcess, providers: dict[str, str], orchestrator: Bus
) -> None:
    name = await _plan(hoist, providers, ["web-1", "db-1"])
    started = (await hoist.ok("plans", "start", name, "-o", "json")).json()
    assert (started["type"], started["number"], started["vms"]) == ("started", 1, 2)
    run = await _started(planner, name)
    S, St = p.Step, p.StepState
    web_root = run.disks["web-1"][0]
    steps = [run.step(vm, s, St.COMPLETED if s is S.INITIALIZE else St.RUNNING)
             for vm in ("web-1", "db-1") for s in (S.INITIALIZE, S.DISK_TRANSFER)]  # fmt: skip
    steps.append(run.step("web-1", S.DISK_TRANSFER, St.RUNNING, web_root))
    for event in steps:
        await orchestrator.publish(catalog.VM_STEP_CHANGED, event)
    # The populator is half done; the planner counts that in the disk's own bytes.
    view = await _get(planner, f"/plans/{name}/vms/{run.vms['web-1']}")
    transfer = next(s for s in view["pipeline"] if s["name"] == "DiskTransfer")
    disk_size = next(t for t in transfer["tasks"] if t["id"] == web_root)["progress"]["total"]
    half = run.progress("web-1", web_root, GIB // 2, GIB)
    await orchestrator.publish(catalog.DISK_PROGRESS, half)

    async def copying() -> bool:
        vm = await _get(planner, f"/plans/{name}/vms/{run.vms['web-1']}")
        return bool(vm["progress"]["completed"] == disk_size // 2)

    await eventually(copying, within=30, what="disk progress in the planner")

    # Status while copying: per VM, and per disk with -v.
    status = await hoist.ok("plans", "status", name, "-v")
    assert "DiskTransfer" in status.stdout
    assert f"{size(disk_size // 2)} / " in status.stdout
    assert "└" in status.stdout
    doc = (await hoist.ok("plans", "status", name, "-o", "json", "-v")).json()
    assert doc["migration"]["phase"] == "Running"
    assert {t["id"] for t in doc["disks"][run.vms["web-1"]]} == set(run.disks["web-1"])

    # The watch sees the copy, then both VMs succeed: exit 0 and a summary.
    watch = asyncio.create_task(hoist("watch", name, "-o", "json", "--interval", "0.2"))
    await asyncio.sleep(0.5)  # let it see the copy in progress (not a correctness bound)
    for vm in ("web-1", "db-1"):
        await orchestrator.publish(catalog.VM_FINISHED, run.finished(vm, p.Outcome.SUCCEEDED))
    result = await watch
    assert result.code == 0, result
    lines = result.lines()
    disk_lines = [x for x in lines if x["type"] == "disk" and x["id"] == web_root]
    assert disk_lines[0]["bytesDone"] == disk_size // 2
    assert disk_lines[0]["rateBytesPerSecond"] == 50e6
    final = lines[-1]
    assert final["type"] == "summary"
    assert final["succeeded"] is True
    phases = {v["name"]: v["phase"] for v in final["vms"]}
    assert phases == {"web-1": "Succeeded", "db-1": "Succeeded"}

    # Watching an ended migration in table mode, piped: the summary, no control codes.
    table = await hoist("watch", name)
    assert table.code == 0, table
    assert "Succeeded" in table.stdout
    assert "migration #1" in table.stdout
    assert "\x1b" not in table.stdout


async def test_cancel_fail_rerun_timeout(
    hoist: Hoist, planner: ServiceProcess, providers: dict[str, str], orchestrator: Bus
) -> None:
    name = await _plan(hoist, providers, ["rerun-a", "rerun-b"])
    watch_before = await hoist("watch", name)
    assert watch_before.code == 1
    assert "has not been started" in watch_before.stderr
    started = await hoist.ok("plans", "start", name)
    assert "migration #1" in started.stdout
    run = await _started(planner, name)

    # Cancel one VM by name: the planner asks the orchestrator; it reports the VM Canceled.
    r = await hoist.ok("plans", "cancel", name, "--vm", "rerun-a", "-o", "json")
    assert r.json()["canceling"] == [run.vms["rerun-a"]]
    r = await hoist("plans", "cancel", name, "--vm", "no-such-vm")
    assert r.code == 1
    assert "no-such-vm" in r.stderr
    await orchestrator.publish(catalog.VM_FINISHED, run.finished("rerun-a", p.Outcome.CANCELED))
    await orchestrator.publish(
        catalog.VM_FINISHED, run.finished("rerun-b", p.Outcome.FAILED, "DiskLocked")
    )
    result = await hoist("watch", name, "--interval", "0.2", "-o", "json")
    assert result.code == 1, result
    final = result.lines()[-1]
    assert final["succeeded"] is False
    phases = {v["name"]: (v["phase"], (v["error"] or {}).get("reason")) for v in final["vms"]}
    assert phases == {"rerun-a": ("Canceled", None), "rerun-b": ("Failed", "DiskLocked")}
    table = await hoist("watch", name)
    assert table.code == 1
    assert "DiskLocked" in table.stdout

    # A re-run; cancel of a plan not running is the API's 409.
    rerun = await hoist.ok("plans", "rerun", name)
    assert "migration #2" in rerun.stdout
    assert "skipped" in rerun.stdout
    # Nothing reports on migration #2: the watch gives up (exit 1) and says so.
    timed = await hoist("watch", name, "--interval", "0.2", "--timeout", "0.5", "-o", "json")
    assert timed.code == 1, timed
    assert timed.lines()[-1]["timedOut"] is True
    assert "gave up watching" in timed.stderr
    r = await hoist.ok("plans", "cancel", name)
    assert "cancel of plan" in r.stdout
    run2 = await _started(planner, name)
    for vm in run2.vms:
        await orchestrator.publish(catalog.VM_FINISHED, run2.finished(vm, p.Outcome.CANCELED))
    await hoist.ok("plans", "status", name)
    done = await hoist("watch", name, "--interval", "0.2")
    assert done.code == 1
    r = await hoist("plans", "cancel", name)
    assert r.code == 1
    assert "HTTP 409" in r.stderr
    assert "not running" in r.stderr


async def test_a_waiting_vm_says_why(
    hoist: Hoist, planner: ServiceProcess, providers: dict[str, str], orchestrator: Bus
) -> None:
    """A VM the orchestrator holds back (the plan's VM limit, the cutover) shows why in
    ``plans status`` and ``watch``, as people read them and as JSON; the cutover of the
    running plan can be moved meanwhile."""
    name = await _plan(hoist, providers, ["web-1", "db-1"])
    await hoist.ok("plans", "start", name)
    run = await _started(planner, name)
    note = "waiting: the plan has 1 of 1 VMs in flight; 1st in line; starts in about 2 min"
    waiting = {
        "note": note,
        "waiting": {"reason": "PlanVmLimit", "held": 1, "limit": 1, "place": 1,
                    "estimatedStart": datetime.now(UTC).isoformat(), "cutover": None},
    }  # fmt: skip
    held = run.step("db-1", p.Step.INITIALIZE, p.StepState.PENDING)
    held = held.model_copy(update={"detail": waiting})
    await orchestrator.publish(catalog.VM_STEP_CHANGED, held)
    await orchestrator.publish(
        catalog.VM_STEP_CHANGED, run.step("web-1", p.Step.INITIALIZE, p.StepState.RUNNING)
    )

    async def queued() -> bool:
        vm = await _get(planner, f"/plans/{name}/vms/{run.vms['db-1']}")
        return bool(vm["waiting"])

    await eventually(queued, within=30, what="the wait in the planner's status")

    status = await hoist.ok("plans", "status", name)
    line = next(x for x in status.stdout.splitlines() if "db-1" in x)
    assert f"Queued — {note}" in line
    doc = (await hoist.ok("plans", "status", name, "-o", "json")).json()
    by_name = {v["name"]: v for v in doc["vms"]}
    assert by_name["db-1"]["waiting"]["reason"] == "PlanVmLimit"
    assert by_name["web-1"]["waiting"] is None

    # watch, piped: a plain line per change; as JSON: the wait in the VM's line.
    plain = await hoist("watch", name, "--interval", "0.2", "--timeout", "0.5")
    assert plain.code == 1, plain
    assert f"db-1: Queued — {note}" in plain.stdout
    assert "web-1: Running Initialize" in plain.stdout
    lines = await hoist("watch", name, "--interval", "0.2", "--timeout", "0.5", "-o", "json")
    vm_line = next(x for x in lines.lines() if x["type"] == "vm" and x["name"] == "db-1")
    assert vm_line["waiting"]["place"] == 1
    assert vm_line["state"] == f"Queued — {note}"

    # Moving the cutover of the running plan; the orchestrator is told.
    r = await hoist.ok("plans", "cutover", name, "--at", "now")
    assert "the running migration is told (revision 1)" in r.stdout

    # Admitted: the wait is gone.
    await orchestrator.publish(
        catalog.VM_STEP_CHANGED, run.step("db-1", p.Step.INITIALIZE, p.StepState.RUNNING)
    )

    async def admitted() -> bool:
        vm = await _get(planner, f"/plans/{name}/vms/{run.vms['db-1']}")
        return bool(vm["waiting"] is None and vm["phase"] == "Running")

    await eventually(admitted, within=30, what="the wait ended")
    status = await hoist.ok("plans", "status", name)
    assert "Queued" not in status.stdout
    for vm in ("web-1", "db-1"):
        await orchestrator.publish(catalog.VM_FINISHED, run.finished(vm, p.Outcome.SUCCEEDED))


async def test_a_warm_vm_shows_its_precopies(
    hoist: Hoist, planner: ServiceProcess, providers: dict[str, str], orchestrator: Bus
) -> None:
    """The precopy detail of WarmPrecopy and FinalCopy reaches ``watch`` and ``status``
    through the planner. (The simulated engine's disks cannot go warm, so a cold plan's VM
    reports the warm steps here: the planner shows steps it did not foresee too.)"""
    name = await _plan(hoist, providers, ["web-1"])
    await hoist.ok("plans", "start", name)
    run = await _started(planner, name)
    S, St = p.Step, p.StepState
    next_at = "2030-05-01T15:04:00+00:00"
    shown_at = datetime.fromisoformat(next_at).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    await orchestrator.publish(
        catalog.VM_STEP_CHANGED, run.step("web-1", S.INITIALIZE, St.COMPLETED)
    )

    async def precopy(step: p.Step, detail: dict[str, Any]) -> None:
        event = run.step("web-1", step, St.RUNNING).model_copy(update={"detail": detail})
        await orchestrator.publish(catalog.VM_STEP_CHANGED, event)

    async def at(step: str, number: int) -> bool:
        vm = await _get(planner, f"/plans/{name}/vms/{run.vms['web-1']}")
        got = next((s for s in vm["pipeline"] if s["name"] == step), None)
        return bool(got and (got["detail"].get("precopy") or {}).get("number") == number)

    third = {"number": 3, "bytes": 120 << 20, "nextAt": next_at, "running": False}
    await precopy(S.WARM_PRECOPY, {"precopy": third})
    await eventually(lambda: at("WarmPrecopy", 3), within=30, what="the precopy detail")
    state = f"WarmPrecopy — precopy 3 done: 120.0 MiB; next at {shown_at}"

    plain = await hoist("watch", name, "--interval", "0.2", "--timeout", "0.5")
    assert f"web-1: Running {state}" in plain.stdout, plain
    lines = await hoist("watch", name, "--interval", "0.2", "--timeout", "0.5", "-o", "json")
    vm_line = next(x for x in lines.lines() if x["type"] == "vm")
    assert vm_line["precopy"] == {**third, "step": "WarmPrecopy"}
    assert vm_line["state"] == state
    status = await hoist.ok("plans", "status", name)
    assert state in status.stdout
    doc = (await hoist.ok("plans", "status", name, "-o", "json")).json()
    assert doc["vms"][0]["precopy"]["number"] == 3

    # An older precopy arriving late changes nothing; the final copy then shows its own.
    await precopy(S.WARM_PRECOPY, {"precopy": {**third, "number": 2}})
    await precopy(S.FINAL_COPY, {"precopy": {"number": 4, "bytes": 12 << 20, "nextAt": None,
                                             "running": True}})  # fmt: skip
    await eventually(lambda: at("FinalCopy", 4), within=30, what="the final copy detail")
    assert await at("WarmPrecopy", 3)
    lines = await hoist("watch", name, "--interval", "0.2", "--timeout", "0.5", "-o", "json")
    vm_line = next(x for x in lines.lines() if x["type"] == "vm")
    assert vm_line["state"] == "FinalCopy — final copy running: 12.0 MiB"
    await orchestrator.publish(catalog.VM_FINISHED, run.finished("web-1", p.Outcome.SUCCEEDED))
