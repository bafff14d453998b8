"""After the plans ran: what the planner says about each VM, and what really arrived.

Status and step timings come from the planner's API (the same the CLI reads); the disks and
VirtualMachines are read from the cluster and compared with the simulators' own model
(``tools.verifying``, ``tools.vmcheck``), so the check trusts none of Hoist's bookkeeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes_asyncio import client

from shared import populator as contract
from tools import bootcheck, vmcheck
from tools import demoreport as rep
from tools import demoscenario as dsc
from tools.stack import Stack
from tools.verifying import VerifyError, check_reported, compare_disk

FINAL = ("Succeeded", "Failed", "Canceled")
#: Boot checks at once: each keeps a core busy under TCG, and these machines have two.
BOOTS_AT_ONCE = 2


Expectations = dict[str, dict[str, vmcheck.ExpectedVm]]


def expectations(stack: Stack, scenario: dsc.Scenario) -> Expectations:
    """Plan -> VM name -> what its VirtualMachine must be, read from the simulators *before*
    the plans start: a migration powers the source VMs off, and ``auto`` follows the power
    state they had."""
    return {
        plan.name: {name: _expected(stack, plan, name) for name in plan.vms}
        for plan in scenario.plans
    }


async def verify_plans(
    stack: Stack, scenario: dsc.Scenario, report: rep.Report, expected: Expectations
) -> None:
    for plan, result in zip(scenario.plans, report.plans, strict=True):
        try:
            await _verify_plan(stack, plan, result, expected[plan.name])
        except Exception as exc:  # one plan's trouble must not hide the others' results
            report.problems.append(f"plan {plan.name}: {exc.__class__.__name__}: {exc}")
    boots = [
        (result.namespace, plan.target == "remote", vm, expected[plan.name][vm.name])
        for plan, result in zip(scenario.plans, report.plans, strict=True)
        if plan.boot_check
        for vm in result.vms
    ]
    if boots:
        print(f"booting {len(boots)} migrated VMs from their volumes ...", flush=True)
        gate = asyncio.Semaphore(BOOTS_AT_ONCE)
        await asyncio.gather(*(_boot(stack, *boot, gate) for boot in boots))
        if result.phase not in FINAL:
            report.problems.append(
                f"plan {plan.name}: still {result.phase or 'not started'} when the watch ended "
                "(--timeout)"
            )


async def _planner_get(stack: Stack, path: str) -> Any:
    planner = stack.services["planner"]
    r = await planner.client.get(path, headers=planner.auth())
    if r.status_code != 200:
        raise RuntimeError(f"GET {path}: {r.status_code} {r.text[:300]}")
    return r.json()


async def _verify_plan(
    stack: Stack,
    plan: dsc.PlanSpec,
    result: rep.PlanResult,
    expected_vms: Mapping[str, vmcheck.ExpectedVm],
) -> None:
    body = await _planner_get(stack, f"/api/v1/plans/{plan.name}")
    migration = (body.get("status") or {}).get("migration") or {}
    result.phase = migration.get("phase") or body.get("phase")
    page = await _planner_get(stack, f"/api/v1/plans/{plan.name}/vms?limit=1000")
    by_name = {item["name"]: item for item in page.get("items") or []}
    for name in plan.vms:
        expected = expected_vms[name]
        vm = rep.VmResult(name, expected.vm_id)
        result.vms.append(vm)
        item = by_name.get(name)
        view: Mapping[str, Any] = {}
        if item is None:
            vm.error = "the plan's migration has no such VM"
        else:
            view = await _planner_get(stack, f"/api/v1/plans/{plan.name}/vms/{item['id']}")
            vm.target_name = view.get("targetName")
            vm.status = view.get("phase")
            error = view.get("error")
            vm.error = (error.get("message") if isinstance(error, Mapping) else error) or None
            vm.steps = rep.step_timings(view)
        await _check_target(
            stack, result.namespace, expected, vm, view, plan.convert_guest, plan.target
        )


def _expected(stack: Stack, plan: dsc.PlanSpec, name: str) -> vmcheck.ExpectedVm:
    if plan.source == "ovirt":
        if stack.engine is None:
            raise RuntimeError("no oVirt engine in the stack")
        inv = stack.engine.inv
        src = next((v for v in inv.vms.values() if v.name == name), None)
        if src is None:
            raise RuntimeError(f"the engine has no VM {name!r}")
        return vmcheck.from_ovirt(inv, src, plan.networks, plan.target_power_state)
    if stack.cloud is None:
        raise RuntimeError("no OpenStack cloud in the stack")
    state = stack.cloud.state
    server = next((s for s in state.servers.values() if s.name == name), None)
    if server is None:
        raise RuntimeError(f"the cloud has no server {name!r}")
    return vmcheck.from_openstack(state, server, plan.networks, plan.target_power_state)


async def _check_target(
    stack: Stack,
    namespace: str,
    expected: vmcheck.ExpectedVm,
    vm: rep.VmResult,
    view: Mapping[str, Any],
    converted: bool = False,
    cluster: str = "local",
) -> None:
    """``converted``: the plan converted its guests (ConvertGuest), so the volumes differ
    from the source by design; the boot check is what proves them, not a checksum."""
    remote = cluster == "remote"
    async with stack.kube(remote) as api:
        claims = await _claims(api, namespace, expected.vm_id)
        target = await _virtual_machine(api, namespace, vm.target_name) if vm.target_name else None
        checksums = await _reported_checksums(api, namespace, claims.values())
    vm.mismatches = vmcheck.check_vm(expected, target)
    for disk in expected.disks:
        d = rep.DiskResult(disk.disk_id, disk.name, disk.size)
        vm.disks.append(d)
        task = rep.transfer_task(view, disk.disk_id)
        if task is not None:
            d.transfer_seconds = rep.seconds_between(task.get("startedAt"), task.get("completedAt"))
            d.transferred = int((task.get("progress") or {}).get("total") or 0) or None
        d.claim = claims.get(contract.label_value(disk.disk_id))
        if d.claim is None:
            d.error = "no claim in the target namespace"
            continue
        reported = checksums.get(d.claim)
        if converted:
            d.converted = True
            print(f"  {vm.name}/{d.name}: converted in place (checked by booting it)", flush=True)
            continue
        try:
            source = disk.path
            if source is None and stack.engine is not None:
                source = await stack.engine.image_path(disk.disk_id)
            if source is None:
                raise VerifyError("the source image is unknown")
            target_file = await stack.volume_file(namespace, d.claim, remote)
            d.comparison = await asyncio.to_thread(
                compare_disk, source, disk.format, target_file, disk.size
            )
            if reported is not None:
                d.checksum = await asyncio.to_thread(
                    check_reported, reported, source, disk.format, disk.size
                )
        except (VerifyError, OSError, client.ApiException) as exc:
            d.error = str(exc)
        print(_line(vm.name, d), flush=True)


async def _boot(
    stack: Stack,
    namespace: str,
    remote: bool,
    vm: rep.VmResult,
    expected: vmcheck.ExpectedVm,
    gate: asyncio.Semaphore,
) -> None:
    """Boot the VirtualMachine Hoist created from the volumes it names (after the disks
    were compared: the boot works on a throwaway overlay, never on the volumes)."""
    if vm.target_name is None or vm.status != "Succeeded":
        vm.boot = {"result": "failed", "error": "no migrated VirtualMachine to boot"}
        return
    try:
        async with stack.kube(remote) as api:
            target = await _virtual_machine(api, namespace, vm.target_name)
        if target is None:
            raise bootcheck.BootCheckError(f"VirtualMachine {vm.target_name} is gone")
        files = {}
        for volume in target["spec"]["template"]["spec"].get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                files[claim] = await stack.volume_file(namespace, claim, remote)
    except (bootcheck.BootCheckError, client.ApiException, OSError) as exc:
        vm.boot = {"result": "failed", "error": str(exc)}
        return
    async with gate:
        workdir = stack.spec.workdir / "boot" / vm.name
        result = await bootcheck.boot(vm.name, target, files, expected, workdir)
    vm.boot = result.json()
    verdict = "passed" if result.passed else f"FAILED: {result.error or result.mismatches}"
    print(f"  {vm.name}: boot {verdict} ({result.seconds or 0:.0f} s, {result.accel})", flush=True)


def _line(vm: str, d: rep.DiskResult) -> str:
    j = d.json()
    if d.error:
        return f"  {vm}/{d.name}: {d.error}"
    verdict = "match" if j["match"] else "MISMATCH"
    line = (
        f"  {vm}/{d.name}: {d.bytes >> 20} MiB, source {str(j['sourceSha256'])[:16]} "
        f"target {str(j['targetSha256'])[:16]}: {verdict}"
    )
    if d.checksum is not None:
        c = d.checksum.reported
        how = "verified by the source" if c.verified else "reported"
        line += (
            f"; populator's {c.algorithm} block checksum ({how}) "
            f"{'matches the source' if d.checksum.match else 'DIFFERS from the source'}"
        )
    return line


async def _reported_checksums(
    api: client.ApiClient, namespace: str, claims: Iterable[str]
) -> dict[str, contract.BlockChecksum]:
    """Claim name -> the block checksum its populator reported (on the claim's volume)."""
    core = client.CoreV1Api(api)
    out = {}
    for name in claims:
        pvc = await core.read_namespaced_persistent_volume_claim(name, namespace)
        if not pvc.spec.volume_name:
            continue
        volume = await core.read_persistent_volume(pvc.spec.volume_name)
        text = (volume.metadata.annotations or {}).get(contract.CHECKSUM_ANNOTATION)
        parsed = contract.BlockChecksum.parse(text) if text else None
        if parsed is not None:
            out[name] = parsed
    return out


async def _claims(api: client.ApiClient, namespace: str, vm_id: str) -> dict[str, str]:
    """The label value of each disk id -> the name of the claim that holds it."""
    found = await client.CoreV1Api(api).list_namespaced_persistent_volume_claim(
        namespace, label_selector=f"{contract.VM}={contract.label_value(vm_id)}"
    )
    return {
        (pvc.metadata.labels or {}).get(contract.DISK, ""): pvc.metadata.name
        for pvc in found.items
        if pvc.metadata.deletion_timestamp is None
    }


async def _virtual_machine(
    api: client.ApiClient, namespace: str, name: str
) -> Mapping[str, Any] | None:
    try:
        obj = await client.CustomObjectsApi(api).get_namespaced_custom_object(
            "kubevirt.io", "v1", namespace, "virtualmachines", name
        )
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj  # type: ignore[no-any-return]
