"""Benchmark: a plan's downtime, 30 oVirt VMs through the whole stack with maxVmsInFlight 4.

Set-up: private NATS and PostgreSQL and the whole of Hoist on them (``tools.stack``, the stack
``make demo`` and tests/e2e run): the oVirt engine simulator (real imageio), the simulated
cluster, the four services and the populator controller, with the stack's own settings (its
orchestrator poll is printed). The engine holds ``--vms`` VMs, every one up, each with one
disk of ``--disk-mib`` MiB, half of it data in 1 MiB extents; every disk's transfers are
throttled to ``--bandwidth-mib`` MiB/s by the simulator's ``bandwidth`` fault, so a copy
takes a little real time (~1-2 s) and VMs overlap. Through the HTTP APIs, as a user: the
engine and the cluster registered as providers, a network and a storage map, one plan of all
the VMs with ``limits.maxVmsInFlight`` = ``--max-vms-in-flight``; the plan is started and
run to its end (every VM Succeeded, else the run fails).

A VM is *down* from its source's power-off, read from the engine simulator's power timeline
(``GET /sim/power-timeline``, ``tools/downtime.py``), until its target VirtualMachine was
created, or until its source came back up. The creation time is the completion of the
VM's ``VirtualMachineCreation`` step in the orchestrator's migration API
(``GET /api/v1/migrations/{id}/vms/{vm}``): the orchestrator records it (wall clock, sub-second)
right after the VirtualMachine was created, in the same commit that frees the VM's slot; the
object's ``creationTimestamp`` has whole seconds only.

Figures:

- ``max_vms_down``: the most source VMs down at once. Target: at most the limit.
- ``downtime_vs_copy_p50`` (target <= 1.5), ``_p90``, ``_max``: per VM, its downtime over
  the copy time of its disks alone, the duration of its ``DiskTransfer`` step (from the claims
  and populator CR made to every disk's copy done and claim bound: populator pod start and
  copy; the populator reports no copy time of its own).
- baseline ``copy_s_p50`` (and ``copy_s_max``): the disks' copy time itself, measured in the
  same run; the old behaviour (every VM powered off at the start) cannot be run any more.
- ``downtime_p50_s``, ``downtime_max_s``; ``wall_s``: the plan's start to every VM final.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench import _report
from shared.devservices import dev_services
from tools import downtime
from tools.processes import ServiceProcess
from tools.stack import Stack, StackSpec

NAMESPACE = "migrated"
PREFIX = "benchdown"
FINAL = ("Succeeded", "Failed", "Canceled")


def scenario(vms: int, disk_mib: int, bandwidth_mib: float) -> dict[str, Any]:
    """The engine: ``vms`` VMs up, one half-allocated disk each, every disk throttled."""
    return {
        "networks": [{"name": "prod", "vlan": 100}],
        "vms": [
            {
                "name": f"dt-{i:03d}",
                "status": "up",
                "nics": [{"network": "prod", "model": "virtio"}],
                "disks": [
                    {
                        "name": f"dt-{i:03d}-disk",
                        "size": f"{disk_mib}MiB",
                        "allocated": 0.5,
                        "extent": "1MiB",
                        "bootable": True,
                    }
                ],
            }
            for i in range(vms)
        ],
        "faults": [{"kind": "bandwidth", "bytes_per_second": int(bandwidth_mib * (1 << 20))}],
    }


async def api(svc: ServiceProcess, method: str, path: str, **kw: Any) -> Any:
    for attempt in range(3):
        try:
            r = await svc.client.request(
                method, f"/api/v1{path}", headers=svc.auth(), timeout=60, **kw
            )
            break
        except httpx.TransportError:
            # A kept-alive connection the server closed as it was reused (an hour-long
            # fleet run lost its plan once to this): a read is asked again.
            if method != "GET" or attempt == 2:
                raise
            await asyncio.sleep(1)
    if r.status_code >= 400:
        raise RuntimeError(f"{svc.name}: {method} {path}: {r.status_code} {r.text[:2000]}")
    return r.json() if r.content else None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def epoch(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def r2(x: float) -> float:
    return round(x, 2)


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1), linear between the closest ranks."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


# --- set-up through the APIs -----------------------------------------------------------------


async def providers(stack: Stack) -> tuple[str, str]:
    """The engine (its certificate pinned) and the cluster Hoist runs in, both Ready."""
    inventory = stack.services["inventory"]
    creds = stack.ovirt_credentials()
    ovirt = await api(
        inventory,
        "POST",
        "/providers",
        json={
            "name": "engine",
            "type": "ovirt",
            "url": creds["url"],
            "credentials": {"user": creds["user"], "password": creds["password"]},
            "tls": {"fingerprint": creds["fingerprint"]},
        },
    )
    cluster = await api(inventory, "POST", "/providers", json={"name": "host", "type": "kubevirt"})
    for pid in (ovirt["id"], cluster["id"]):
        deadline = time.monotonic() + 120
        while True:
            found = await api(inventory, "GET", f"/providers/{pid}")
            if found["status"]["phase"] == "Ready":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"provider {pid} not Ready: {found['status']}")
            await asyncio.sleep(0.5)
    return ovirt["id"], cluster["id"]


async def make_plan(
    stack: Stack,
    names: list[str],
    limit: int,
    *,
    name: str = "downtime",
    common: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A plan of ``names`` (``common``: the providers and maps of an earlier plan)."""
    planner = stack.services["planner"]
    if common is None:
        common = await plan_maps(stack)
    plan: dict[str, Any] = await api(
        planner,
        "POST",
        "/plans",
        json={
            **common,
            "name": name,
            "targetNamespace": NAMESPACE,
            "vms": [{"name": n} for n in names],
            "limits": {"maxVmsInFlight": limit},
            **(extra or {}),
        },
    )
    if plan["phase"] != "Ready":
        raise RuntimeError(f"plan not Ready: {plan['phase']} {plan.get('problems')}")
    if plan["limits"].get("maxVmsInFlight") != limit:
        raise RuntimeError(f"the planner did not keep maxVmsInFlight {limit}: {plan['limits']}")
    return plan


async def plan_maps(stack: Stack) -> dict[str, Any]:
    """The providers registered, a network and a storage map: what every plan names."""
    planner = stack.services["planner"]
    source, target = await providers(stack)
    common = {"sourceProvider": source, "targetProvider": target}
    network = await api(
        planner,
        "POST",
        "/networkmaps",
        json={
            **common,
            "name": "prod",
            "entries": [{"source": {"name": "prod"}, "destination": {"type": "pod"}}],
        },
    )
    storage = await api(
        planner,
        "POST",
        "/storagemaps",
        json={
            **common,
            "name": "data",
            "entries": [
                {
                    "source": {"name": "data"},
                    "destination": {"storageClass": "standard-wffc", "volumeMode": "Block"},
                }
            ],
        },
    )
    return {**common, "networkMap": network["id"], "storageMap": storage["id"]}


async def run_plan(stack: Stack, plan: dict[str, Any], timeout: float) -> str:
    """Start the plan and wait until its migration is final; its id."""
    migration_id = await start_plan(stack, plan)
    return await wait_final(stack, plan, migration_id, timeout)


async def start_plan(stack: Stack, plan: dict[str, Any]) -> str:
    started = await api(stack.services["planner"], "POST", f"/plans/{plan['id']}/start")
    return str(started["migration"]["id"])


async def wait_final(stack: Stack, plan: dict[str, Any], migration_id: str, timeout: float) -> str:
    planner = stack.services["planner"]
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        status = (await api(planner, "GET", f"/plans/{plan['id']}"))["status"]
        current = status.get("migration") or {}
        if current.get("id") == migration_id and current.get("phase") in FINAL:
            return migration_id
        shown = f"{current.get('phase')} {current.get('vms')}"
        if shown != last:
            log(f"  migration {shown}")
            last = shown
        if time.monotonic() > deadline:
            raise RuntimeError(f"the plan did not end within {timeout:g} s: {current}")
        await asyncio.sleep(1)


# --- measuring --------------------------------------------------------------------------------


async def pipelines(stack: Stack, migration_id: str) -> dict[str, dict[str, Any]]:
    """Every VM's pipeline from the orchestrator's migration API, by VM id; fails loudly
    unless every VM Succeeded."""
    orchestrator = stack.services["orchestrator"]
    migration = await api(orchestrator, "GET", f"/migrations/{migration_id}")
    items = migration["items"]
    bad = [
        f"{v['name']}: {v['phase']} {v.get('error')}" for v in items if v["phase"] != "Succeeded"
    ]
    if bad:
        raise RuntimeError(f"{len(bad)} of {len(items)} VMs did not succeed: {'; '.join(bad)}")
    out: dict[str, dict[str, Any]] = {}
    for v in items:
        out[v["vmId"]] = await api(
            orchestrator, "GET", f"/migrations/{migration_id}/vms/{v['vmId']}"
        )
    return out


def step_times(view: dict[str, Any], name: str) -> tuple[float, float]:
    for step in view["pipeline"]:
        if step["name"] == name:
            began, ended = epoch(step.get("startedAt")), epoch(step.get("completedAt"))
            if began is None or ended is None:
                break
            return began, ended
    raise RuntimeError(f"VM {view.get('name')}: no completed {name} step: {view['pipeline']}")


async def measure(args: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"bench": "downtime", "figures": {}, "targets": {}}
    names = [f"dt-{i:03d}" for i in range(args.vms)]
    cases: list[tuple[str, Any]] = []
    if not args.warm_only:
        cases.append(("fleet", lambda work: _measure(args, names, work)))
    if not args.no_warm:
        cases.append(("warm", lambda work: measure_warm(args, work)))
    for case, run in cases:
        if args.keep:  # the logs and volumes stay for a look
            work = Path(tempfile.mkdtemp(prefix=f"hoist-bench-{case}-", dir=args.workdir))
            log(f"workdir {work} (kept)")
            got = await run(work)
        else:
            with tempfile.TemporaryDirectory(prefix=f"hoist-bench-{case}-", dir=args.workdir) as t:
                got = await run(Path(t))
        if case == "warm":
            result["figures"].update(got)
            result["targets"]["warm_downtime_vs_cold"] = _report.target(
                got["warm_downtime_vs_cold"], "<=", 0.15
            )
        else:
            result["figures"].update(got["figures"])
            result["targets"].update(got["targets"])
    return result


async def _measure(args: Any, names: list[str], work: Path) -> dict[str, Any]:
    async with dev_services(use_env=False) as ds:
        spec = StackSpec(
            workdir=work,
            nats_url=ds.nats_url,
            database_url=ds.database_url,
            token=secrets.token_urlsafe(24),
            ovirt=scenario(args.vms, args.disk_mib, args.bandwidth_mib),
            prefix=PREFIX,
            namespace=NAMESPACE,
        )
        mark = time.monotonic()
        async with Stack(spec) as stack:
            poll = stack.environment()["HOIST_ORCHESTRATOR_POLL_SECONDS"]
            log(f"stack up in {time.monotonic() - mark:.1f} s (logs in {stack.logs})")
            plan = await make_plan(stack, names, args.max_vms_in_flight)
            before = await stack.power_timelines()
            by_name = {vm.name: vid for vid, vm in before.items()}
            ids = [by_name[n] for n in names]
            began = time.time()
            off = [n for n, vid in zip(names, ids, strict=True) if downtime.state_at(
                before[vid].timeline, began) != downtime.UP]  # fmt: skip
            if off:
                raise RuntimeError(f"source VMs not up at the start: {off}")
            log(f"plan of {len(names)} VMs, maxVmsInFlight {args.max_vms_in_flight}: started")
            migration_id = await run_plan(stack, plan, args.timeout)
            wall = time.time() - began
            views = await pipelines(stack, migration_id)
            power = await stack.power_timelines()
    missing = [n for n, vid in zip(names, ids, strict=True) if vid not in views]
    if missing:
        raise RuntimeError(f"VMs missing from the migration: {missing}")

    seen: dict[str, list[tuple[float, str]]] = {}
    downtimes: list[float] = []
    copies: list[float] = []
    ratios: list[float] = []
    for name, vid in zip(names, ids, strict=True):
        _, created = step_times(views[vid], "VirtualMachineCreation")
        copy_began, copy_ended = step_times(views[vid], "DiskTransfer")
        seen[vid] = downtime.as_users_see(power[vid].timeline, created)
        intervals = downtime.down_intervals(seen[vid], began)
        if not intervals:
            raise RuntimeError(f"{name}: its source was never powered off: {power[vid].changes}")
        down = sum((end or created) - start for start, end in intervals)
        copy = copy_ended - copy_began
        downtimes.append(down)
        copies.append(copy)
        ratios.append(down / copy)
    peak = downtime.max_down(seen, since=began, vms=ids)
    figures: dict[str, Any] = {
        "vms": args.vms,
        "max_vms_in_flight": args.max_vms_in_flight,
        "max_vms_down": peak,
        "downtime_vs_copy_p50": r2(statistics.median(ratios)),
        "downtime_vs_copy_p90": r2(quantile(ratios, 0.9)),
        "downtime_vs_copy_max": r2(max(ratios)),
        "downtime_p50_s": r2(statistics.median(downtimes)),
        "downtime_max_s": r2(max(downtimes)),
        "copy_s_p50": r2(statistics.median(copies)),
        "copy_s_max": r2(max(copies)),
        "wall_s": round(wall, 1),
        "orchestrator_poll_s": float(poll),
        "source_throttle_mib_s": args.bandwidth_mib,
    }
    targets = {
        "max_vms_down": _report.target(peak, "<=", args.max_vms_in_flight),
        "downtime_vs_copy_p50": _report.target(figures["downtime_vs_copy_p50"], "<=", 1.5),
    }
    return {"bench": "downtime", "figures": figures, "targets": targets}


# --- the warm case ----------------------------------------------------------------------------


def warm_scenario(disk_gib: int) -> dict[str, Any]:
    """Two VMs up with the same disk: ``disk_gib`` GiB, half of it data in 64 MiB extents,
    qcow2 with incremental backup enabled (one migrates warm, the other cold)."""
    return {
        "networks": [{"name": "prod", "vlan": 100}],
        "vms": [
            {
                "name": name,
                "status": "up",
                "nics": [{"network": "prod", "model": "virtio"}],
                "disks": [
                    {
                        "name": f"{name}-disk",
                        "size": f"{disk_gib}GiB",
                        "allocated": 0.5,
                        "extent": "64MiB",
                        "format": "cow",
                        "backup": "incremental",
                        "bootable": True,
                    }
                ],
            }
            for name in ("wc-cold", "wc-warm")
        ],
    }


async def vm_view(stack: Stack, migration_id: str, vm_id: str) -> dict[str, Any]:
    view: dict[str, Any] = await api(
        stack.services["orchestrator"], "GET", f"/migrations/{migration_id}/vms/{vm_id}"
    )
    return view


async def _downtime(stack: Stack, migration_id: str, vm_id: str, began: float) -> float:
    """Power-off (the engine's timeline) to the target VM's creation, of a VM that Succeeded."""
    view = await vm_view(stack, migration_id, vm_id)
    if view["phase"] != "Succeeded":
        raise RuntimeError(f"VM {vm_id} ended {view['phase']}: {view.get('error')}")
    _, created = step_times(view, "VirtualMachineCreation")
    timeline = (await stack.power_timelines())[vm_id].timeline
    intervals = downtime.down_intervals(downtime.as_users_see(timeline, created), began)
    if not intervals:
        raise RuntimeError(f"VM {vm_id}: its source was never powered off")
    return sum((end or created) - start for start, end in intervals)


async def measure_warm(args: Any, work: Path) -> dict[str, Any]:
    """Downtime of one VM migrated warm against the same VM migrated cold: after a full
    precopy, ``--warm-change`` of its data changes, then the cutover."""
    async with dev_services(use_env=False) as ds:
        spec = StackSpec(
            workdir=work,
            nats_url=ds.nats_url,
            database_url=ds.database_url,
            token=secrets.token_urlsafe(24),
            ovirt=warm_scenario(args.warm_disk_gib),
            prefix=f"{PREFIX}warm",
            namespace=NAMESPACE,
            # One precopy: the change comes after it, the cutover after the change.
            env={"HOIST_ORCHESTRATOR_PRECOPY_INTERVAL_SECONDS": "3600"},
        )
        async with Stack(spec) as stack:
            engine = stack.engine
            assert engine is not None
            ids = {v.name: v.id for v in engine.inv.vms.values()}
            common = await plan_maps(stack)
            cold = await make_plan(stack, ["wc-cold"], 1, name="cold", common=common)
            began = time.time()
            log(f"cold: {args.warm_disk_gib} GiB disk, half data")
            cold_id = await run_plan(stack, cold, args.timeout)
            cold_down = await _downtime(stack, cold_id, ids["wc-cold"], began)
            log(f"cold: down {cold_down:.1f} s")
            later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
            warm = await make_plan(
                stack,
                ["wc-warm"],
                1,
                name="warm",
                common=common,
                extra={"migrationType": "warm", "cutover": later},
            )
            began = time.time()
            warm_id = await start_plan(stack, warm)
            vm_id = ids["wc-warm"]
            deadline = time.monotonic() + args.timeout
            while True:
                try:
                    view = await vm_view(stack, warm_id, vm_id)
                except RuntimeError:  # not at the orchestrator yet
                    await asyncio.sleep(0.5)
                    continue
                step: dict[str, Any] = next(
                    (x for x in view["pipeline"] if x["name"] == "WarmPrecopy"), {}
                )
                pre = (step.get("detail") or {}).get("precopy") or {}
                if int(pre.get("number") or 0) >= 1 and not pre.get("running"):
                    break
                if view["phase"] in FINAL or time.monotonic() > deadline:
                    raise RuntimeError(f"no precopy finished: {view['phase']} {view.get('error')}")
                await asyncio.sleep(0.5)
            log(f"warm: precopy 1 done ({pre.get('bytes', 0) / (1 << 20):.0f} MiB)")
            disk = engine.inv.vms[vm_id].disk_attachments[0].disk_id
            data = engine.inv.disks[disk].provisioned_size // 2
            changed = int(data * args.warm_change)
            await engine.write_guest(disk, changed, zero=False)
            log(f"warm: {changed / (1 << 20):.0f} MiB changed; cutover now")
            await api(stack.services["planner"], "PUT", f"/plans/{warm['id']}/cutover",
                      json={"at": "now"})  # fmt: skip
            await wait_final(stack, warm, warm_id, args.timeout)
            warm_down = await _downtime(stack, warm_id, vm_id, began)
            warm_view = await vm_view(stack, warm_id, vm_id)
            final = next(x for x in warm_view["pipeline"] if x["name"] == "FinalCopy")
            spans = {
                name: r2(end - start)
                for name in ("PowerOffSource", "FinalCopy", "VirtualMachineCreation")
                for start, end in [step_times(warm_view, name)]
            }
            cold_copy = step_times(await vm_view(stack, cold_id, ids["wc-cold"]), "DiskTransfer")
    final_bytes = int(((final.get("detail") or {}).get("precopy") or {}).get("bytes") or 0)
    return {
        "warm_downtime_s": r2(warm_down),
        "cold_downtime_s": r2(cold_down),
        "warm_downtime_vs_cold": r2(warm_down / cold_down),
        "warm_final_copy_mib": r2(final_bytes / (1 << 20)),
        "warm_changed_mib": r2(changed / (1 << 20)),
        "warm_disk_gib": args.warm_disk_gib,
        "warm_power_off_s": spans["PowerOffSource"],
        "warm_final_copy_s": spans["FinalCopy"],
        "warm_vm_creation_s": spans["VirtualMachineCreation"],
        "cold_copy_s": r2(cold_copy[1] - cold_copy[0]),
    }


def main() -> int:
    p = _report.parser(__doc__)
    p.add_argument("--vms", type=int, default=30)
    p.add_argument("--max-vms-in-flight", type=int, default=4)
    p.add_argument("--disk-mib", type=int, default=24, help="each VM's disk; half is data")
    p.add_argument(
        "--bandwidth-mib", type=float, default=8, help="each disk's transfer throttle, MiB/s"
    )
    p.add_argument("--timeout", type=float, default=240, help="seconds the plan may take")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--keep", action="store_true", help="keep the workdir (logs, volumes)")
    p.add_argument("--warm-disk-gib", type=int, default=4, help="the warm case's disk; half data")
    p.add_argument(
        "--warm-change", type=float, default=0.05, help="share of its data changed after precopy"
    )
    p.add_argument("--no-warm", action="store_true", help="skip the warm case")
    p.add_argument("--warm-only", action="store_true", help="only the warm case")
    args = p.parse_args()
    began = time.monotonic()
    result = asyncio.run(measure(args))
    f = result["figures"]
    if "warm_downtime_vs_cold" in f:
        print(
            f"warm case: one VM, a {args.warm_disk_gib} GiB disk (half data); after one "
            f"precopy {args.warm_change:.0%} of its data changed, then the cutover: down "
            f"{f['warm_downtime_s']:g} s warm against {f['cold_downtime_s']:g} s cold "
            f"(final copy {f['warm_final_copy_mib']:g} MiB)"
        )
    if "vms" not in f:
        return _report.emit(result, args.json)
    print(
        f"{f['vms']} oVirt VMs up, one {args.disk_mib} MiB disk each ({args.disk_mib // 2} MiB "
        f"data), source throttled to {args.bandwidth_mib:g} MiB/s per disk (simulator "
        f"'bandwidth' fault); maxVmsInFlight {f['max_vms_in_flight']}; orchestrator poll "
        f"{f['orchestrator_poll_s']:g} s (tools/stack.py's default); "
        f"run {time.monotonic() - began:.0f} s"
    )
    print(
        "down: source power-off (engine's power timeline) to VirtualMachineCreation completed "
        "(orchestrator's migration API); copy: DiskTransfer step (populator pod start + copy)"
    )
    missed = [k for k, t in result["targets"].items() if not t["met"]]
    if missed:
        print(f"targets NOT met: {', '.join(missed)}")
    return _report.emit(result, args.json)


if __name__ == "__main__":
    sys.exit(main())
