"""oVirt end to end, through the APIs only: plans made and started at the planner, status and
progress read back from it and from the progress service, disks compared byte for byte
with the engine's images, VirtualMachines checked against the KubeVirt schema and against
the source VM's configuration.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

from sim.kube.kinds import BUILTIN, Registry
from sim.kube.validation import Validator
from sim.ovirt.engine import Engine
from tests.cli.conftest import cli_env, run_cli
from tests.conftest import eventually
from tests.e2e.conftest import (
    NAMESPACE,
    create_plan,
    start,
    svc,
    vm_view,
    vms_of,
    wait_migration,
    wait_startable,
)
from tests.inventory.conftest import api
from tests.orchestrator.pipelines import labelled
from tests.populators.ovirt.conftest import assert_same_image
from tests.sim.imagefiles import guest_bytes
from tools.downtime import as_users_see, max_down
from tools.stack import Stack

VM_KIND = Registry(BUILTIN).by_kind("kubevirt.io", "VirtualMachine")
VALIDATOR = Validator(strict=True)


def source_vm(engine: Engine, name: str) -> Any:
    return next(v for v in engine.inv.vms.values() if v.name == name)


async def target_vm(stack: Stack, name: str) -> dict[str, Any]:
    async with stack.kube() as kube:
        obj: dict[str, Any] = await client.CustomObjectsApi(kube).get_namespaced_custom_object(
            "kubevirt.io", "v1", NAMESPACE, "virtualmachines", name
        )
    return obj


async def claim_of(stack: Stack, vm_id: str, disk_id: str) -> str:
    """The claim Hoist made for a disk, found by its labels (as a user finds it)."""
    async with stack.kube() as kube:
        found = await client.CoreV1Api(kube).list_namespaced_persistent_volume_claim(
            NAMESPACE, label_selector=f"hoist.io/vm={vm_id},hoist.io/disk={disk_id}"
        )
    names = [c.metadata.name for c in found.items]
    assert len(names) == 1, names
    return str(names[0])


async def assert_migrated(stack: Stack, vm_id: str, target_name: str) -> dict[str, Any]:
    """Every disk of the source VM byte-exact in its claim, and the VirtualMachine valid
    against KubeVirt's schema and faithful to the source's configuration."""
    engine = stack.engine
    assert engine is not None
    src = engine.inv.vms[vm_id]
    for att in src.disk_attachments:
        disk = engine.inv.disks[att.disk_id]
        copy = await stack.volume_file(NAMESPACE, await claim_of(stack, vm_id, disk.id))
        await assert_same_image(engine, disk, copy)
    vm = await target_vm(stack, target_name)
    assert VM_KIND is not None
    assert VALIDATOR.check(VM_KIND, vm) == [], vm
    domain = vm["spec"]["template"]["spec"]["domain"]
    cpu = domain["cpu"]
    assert (cpu["sockets"], cpu["cores"], cpu["threads"]) == (src.sockets, src.cores, src.threads)
    memory = domain.get("memory", {}).get("guest") or domain["resources"]["requests"]["memory"]
    assert _bytes(memory) == src.memory
    uefi = src.bios_type in ("q35_ovmf", "q35_secure_boot")
    assert ("efi" in domain.get("firmware", {}).get("bootloader", {})) == uefi
    assert len(domain["devices"]["disks"]) == len(src.disk_attachments)
    macs = sorted(i["macAddress"] for i in domain["devices"]["interfaces"])
    assert macs == sorted(n.mac for n in src.nics)
    return vm


def _bytes(quantity: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


def transfer_task(view: dict[str, Any], disk_id: str) -> dict[str, Any] | None:
    step = next((s for s in view["pipeline"] if s["name"] == "DiskTransfer"), None)
    if step is None:
        return None
    return next((t for t in step["tasks"] if t["id"] == disk_id), None)


async def test_vms_migrate_byte_exact_and_progress_shows_while_copying(
    stack: Stack, providers: dict[str, str], maps: dict[str, tuple[str, str]]
) -> None:
    engine = stack.engine
    assert engine is not None
    web, db = source_vm(engine, "web"), source_vm(engine, "db")
    slow_disk = next(
        a.disk_id
        for a in web.disk_attachments
        if engine.inv.disks[a.disk_id].name == "slow-web-data"
    )
    plan = await create_plan(stack, providers, maps, "ovirt", ["web", "db"])
    migration = await start(stack, plan)
    assert (migration["vms"], migration["skipped"]) == (2, 0)

    # While the throttled disk copies, both the planner (per task) and the progress
    # service (per disk, scraped from the populator pod) show bytes moving.
    seen: dict[str, Any] = {}

    async def copying() -> bool:
        task = transfer_task(await vm_view(stack, plan, web.id), slow_disk)
        if task is None:
            return False
        done, total = task["progress"]["completed"], task["progress"]["total"]
        seen["planner"] = task
        return bool(0 < done < total and task["state"] == "Running")

    await eventually(copying, within=120, every=0.2, what="the slow disk seen mid-copy")
    r = await api(svc(stack, "progress"), "GET", f"/progress/disks/{slow_disk}")
    assert r.status_code == 200, r.text
    disk = r.json()
    assert disk["vmId"] == web.id
    assert disk["bytesTotal"] > 0

    ended = await wait_migration(stack, plan, migration["id"])
    assert ended["phase"] == "Succeeded", ended
    assert ended["vms"]["succeeded"] == 2
    assert ended["progress"]["completed"] == ended["progress"]["total"] > 0
    views = await vms_of(stack, plan)
    vm_web = await assert_migrated(stack, web.id, views["web"]["targetName"])
    vm_db = await assert_migrated(stack, db.id, views["db"]["targetName"])
    image_disk = engine.inv.disk_by_name("db-image")  # holds the user's image's bytes
    image_copy = await stack.volume_file(NAMESPACE, await claim_of(stack, db.id, image_disk.id))
    assert image_disk.image.source is not None
    want = await asyncio.to_thread(guest_bytes, image_disk.image.source.path)
    with image_copy.open("rb") as f:
        assert f.read(len(want)) == want
    # The target power state follows the source ("auto"): web was up, db was down.
    assert vm_web["spec"]["runStrategy"] == "Always"
    assert vm_db["spec"]["runStrategy"] == "Halted"
    pipeline = (await vm_view(stack, plan, web.id))["pipeline"]
    assert [s["state"] for s in pipeline] == ["Completed"] * len(pipeline)
    # Every step has its times, a step done within one call (Initialize) too.
    assert all(s["startedAt"] and s["startedAt"] <= s["completedAt"] for s in pipeline), pipeline
    assert transfer_task({"pipeline": pipeline}, slow_disk) is not None


async def test_a_failing_disk_fails_its_vm_and_a_rerun_skips_what_succeeded(
    stack: Stack, providers: dict[str, str], maps: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    engine = stack.engine
    assert engine is not None
    flaky = source_vm(engine, "flaky")
    plan = await create_plan(stack, providers, maps, "ovirt", ["flaky", "steady"])
    first = await start(stack, plan)
    env = cli_env(tmp_path, **stack.cli_env())
    watched = await run_cli(
        ["watch", plan["name"], "-o", "json", "--interval", "0.5"], env, guard=400
    )
    assert watched.code == 1, watched  # a VM failed: the exit code says so
    assert watched.lines()[-1]["succeeded"] is False
    ended = await wait_migration(stack, plan, first["id"], within=300)
    assert ended["phase"] == "Failed", ended
    assert (ended["vms"]["succeeded"], ended["vms"]["failed"]) == (1, 1), ended
    views = await vms_of(stack, plan)
    assert views["flaky"]["phase"] == "Failed"
    assert views["flaky"]["error"], views["flaky"]  # says why
    assert views["steady"]["phase"] == "Succeeded"
    # The failed VM leaves nothing behind in the cluster, and its source runs again.
    async with stack.kube() as kube:
        left = await labelled(kube, f"hoist.io/vm={flaky.id}")
    assert left["pvc"] == [], left
    assert left["virtualmachines"] == [], left
    assert engine.inv.vms[flaky.id].status == "up"
    migrated = await target_vm(stack, views["steady"]["targetName"])
    # Why it failed outlives the populator pod: the CLI reads its log from the orchestrator.
    told = await run_cli(["plans", "logs", plan["name"], "-o", "json"], env)
    assert told.code == 0, told
    (report,) = told.json()["vms"]  # only the failed VM by default
    assert (report["name"], report["phase"]) == ("flaky", "Failed"), report
    (disk,) = [f for f in report["failures"] if f["step"] == "DiskTransfer"]
    assert disk["error"], disk
    assert disk["log"].strip(), disk  # the populator's own last words
    shown = await run_cli(["plans", "logs", plan["name"], "--vm", "steady", "-n", "3"], env)
    assert shown.code == 0, shown
    assert "VM steady" in shown.stdout, shown
    assert "no failed step" in shown.stdout, shown

    # The storage is fixed; a re-run migrates only what did not succeed.
    engine.faults[:] = [f for f in engine.faults if f.kind != "paused_system"]
    await wait_startable(stack, plan)
    second = await start(stack, plan)
    assert (second["vms"], second["skipped"]) == (1, 1), second  # to run, skipped
    ended = await wait_migration(stack, plan, second["id"])
    assert ended["phase"] == "Succeeded", ended
    assert ended["vms"]["skipped"] == 1
    await assert_migrated(stack, flaky.id, (await vm_view(stack, plan, flaky.id))["targetName"])
    again = await target_vm(stack, views["steady"]["targetName"])
    assert again["metadata"]["uid"] == migrated["metadata"]["uid"]  # not migrated twice


async def test_cancel_mid_transfer_removes_the_vm_and_restores_the_source(
    stack: Stack, providers: dict[str, str], maps: dict[str, tuple[str, str]]
) -> None:
    engine = stack.engine
    assert engine is not None
    slow = source_vm(engine, "slow")
    disk_id = slow.disk_attachments[0].disk_id
    plan = await create_plan(stack, providers, maps, "ovirt", ["slow"])
    migration = await start(stack, plan)

    async def copying() -> bool:
        task = transfer_task(await vm_view(stack, plan, slow.id), disk_id)
        return task is not None and task["progress"]["completed"] > 0

    await eventually(copying, within=120, every=0.2, what="the slow disk copying")
    r = await api(svc(stack, "planner"), "POST", f"/plans/{plan['id']}/cancel")
    assert r.status_code == 202, r.text
    ended = await wait_migration(stack, plan, migration["id"])
    assert ended["phase"] == "Canceled", ended
    view = await vm_view(stack, plan, slow.id)
    assert view["phase"] == "Canceled", view

    async def gone() -> bool:
        async with stack.kube() as kube:
            left = await labelled(kube, f"hoist.io/vm={slow.id}")
        return not any(left.values())

    await eventually(gone, within=60, what="the canceled VM's objects deleted")
    assert engine.inv.vms[slow.id].status == "up"  # powered back on


async def test_a_cutover_holds_every_power_off_until_it_is_moved_to_now(
    stack: Stack, providers: dict[str, str], maps: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    """A user schedules the downtime window: the VMs wait with their sources up and say
    why; ``hoist plans cutover PLAN --at now`` opens the window while the plan runs, and
    the plan's one VM slot then takes them one at a time."""
    engine = stack.engine
    assert engine is not None
    names = ["window-0", "window-1", "window-2"]
    members = [source_vm(engine, n) for n in names]
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    entries: list[str | dict[str, Any]] = [
        {"name": "window-0", "targetPowerState": "off"},
        "window-1",
        "window-2",
    ]
    plan = await create_plan(
        stack, providers, maps, "ovirt", entries, cutover=later, limits={"maxVmsInFlight": 1}
    )
    migration = await start(stack, plan)

    async def all_wait_for_cutover() -> bool:
        views = await vms_of(stack, plan)
        return all(
            (views.get(n) or {}).get("waiting") and views[n]["waiting"]["reason"] == "Cutover"
            for n in names
        )

    await eventually(all_wait_for_cutover, within=60, what="every VM waiting for the cutover")
    assert [engine.inv.vms[vm.id].status for vm in members] == ["up"] * 3
    began = datetime.now(UTC).timestamp()
    env = cli_env(tmp_path, **stack.cli_env())
    moved = await run_cli(["plans", "cutover", plan["name"], "--at", "now"], env)
    assert moved.code == 0, moved
    ended = await wait_migration(stack, plan, migration["id"])
    assert ended["phase"] == "Succeeded", ended
    # One VM slot: never two sources down at once (down until its target VM exists).
    views = await vms_of(stack, plan)
    seen: dict[str, list[tuple[float, str]]] = {}
    for vm in members:
        view = await vm_view(stack, plan, vm.id)
        created = next(s for s in view["pipeline"] if s["name"] == "VirtualMachineCreation")
        timeline = [(c.at, c.state) for c in vm.power.changes]
        seen[vm.id] = as_users_see(
            timeline, datetime.fromisoformat(created["completedAt"]).timestamp()
        )
    assert max_down(seen, since=began) == 1, seen
    # window-0's own targetPowerState (off) overrides the plan's (auto: it was up).
    vm0 = await target_vm(stack, views["window-0"]["targetName"])
    assert vm0["spec"]["runStrategy"] == "Halted"
    vm1 = await target_vm(stack, views["window-1"]["targetName"])
    assert vm1["spec"]["runStrategy"] == "Always"


async def test_a_warm_plan_precopies_while_the_vm_runs_and_the_user_sees_each_precopy(
    stack: Stack, providers: dict[str, str], maps: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    """Through the APIs and the CLI: a warm plan is valid for disks with incremental backup;
    ``hoist watch`` shows each precopy while the source runs and writes; the cutover set
    with the CLI powers it off, and the VM arrives byte-exact as it was at that moment."""
    engine = stack.engine
    assert engine is not None
    web = source_vm(engine, "warm-web")
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    plan = await create_plan(
        stack,
        providers,
        maps,
        "ovirt",
        ["warm-web"],
        migrationType="warm",
        precopyIntervalMinutes=1,
        cutover=later,
    )
    migration = await start(stack, plan)
    env = cli_env(tmp_path, **stack.cli_env())
    seen: list[dict[str, Any]] = []

    async def precopied_twice() -> bool:
        view = await vm_view(stack, plan, web.id)
        step: dict[str, Any] = next((s for s in view["pipeline"] if s["name"] == "WarmPrecopy"), {})
        precopy = (step.get("detail") or {}).get("precopy") or {}
        seen.append(precopy)
        return int(precopy.get("number") or 0) >= 2 and not precopy.get("running")

    await eventually(precopied_twice, within=120, every=0.3, what="two precopies of warm-web")
    assert engine.inv.vms[web.id].status == "up"  # still running, still written to
    status = await run_cli(["plans", "status", plan["name"]], env)
    assert status.code == 0, status
    assert "precopy" in status.stdout, status.stdout
    cutover = datetime.now(UTC).timestamp()
    moved = await run_cli(["plans", "cutover", plan["name"], "--at", "now"], env)
    assert moved.code == 0, moved
    ended = await wait_migration(stack, plan, migration["id"], within=180)
    assert ended["phase"] == "Succeeded", ended
    first_off = next(c.at for c in web.power.changes if c.state != "up")
    assert first_off >= cutover
    await assert_migrated(stack, web.id, (await vm_view(stack, plan, web.id))["targetName"])
    pipeline = (await vm_view(stack, plan, web.id))["pipeline"]
    assert [s["name"] for s in pipeline] == [
        "Initialize",
        "WarmPrecopy",
        "PowerOffSource",
        "FinalCopy",
        "VirtualMachineCreation",
        "Cleanup",
    ]
    final = next(s for s in pipeline if s["name"] == "FinalCopy")
    assert final["detail"]["precopy"]["final"] is True
    history = final["detail"]["precopies"]
    assert len(history) >= 3, history
    assert history[-1]["number"] == "final", history
    assert all(h["bytes"] >= 0 and h["startedAt"] <= h["endedAt"] for h in history), history
