"""Benchmark: a 1,000-VM oVirt plan run to its end; the control plane's cost per VM and disk.

Set-up: private NATS and PostgreSQL and the whole of Hoist on them (``tools.stack``: the oVirt
engine simulator with the real imageio daemon, the simulated cluster whose kubelet runs the
real populator program, the four services and the populator controller as their own
processes) **with the services' production defaults** (``tools.stack``'s quicker demo rhythm
is put back: ``production_env``). The engine holds ``--vms`` VMs, every one up, each with one
or two disks of 16-64 MiB in mixed layouts (raw or qcow2, large or scattered extents, 10-60 %
data). Through the HTTP APIs, as a user: providers, a network and a storage map, one plan of
every VM with the default limits, started and run to its end (every VM Succeeded, else the
run fails).

A disk's *copy* is the populator's own work on the data: from its ``copy via`` log line (the
transfer is ready, the plan of extents read) to its ``copied`` line (data written, synced,
the transfer finalized), timed by the populator process itself (``services/populators``,
its pod log kept by the simulated kubelet). Everything else is the control plane's
*overhead* on that disk:

- ``start``: the claim created (the disk's ``DiskTransfer`` task started) to the copy
  started: populator CR and pod made, the pod scheduled and started, the process's imports,
  login, image transfer created and ready;
- ``bind``: the copy done to the claim bound (the task completed): the pod's exit noticed,
  the volume rebound to the user's claim, the orchestrator's wait noticing it;
- ``vm``: the VM's last claim bound to its VirtualMachine created
  (``VirtualMachineCreation`` completed).

Figures:

- ``wall_s``: the plan's start to every VM final; ``copy_sum_s``: the copies' times summed;
  ``overhead_ratio``: wall time over the copy times summed, as if the copies ran one after
  the other (< 1 when the copies overlap); ``wall_vs_ideal``: wall time over the copy times
  summed divided by the disk limit (the copies back to back at the limit, the least any
  control plane could take).
- ``disk_overhead_p50_s``/``_p99_s``: per disk, DiskTransfer time minus the copy's own time
  (its ``start`` and ``bind`` parts with their own p50/p99); ``vm_created_p50_s``/``_p99_s``.
- ``cleanup_p50_s``/``_p99_s``: the ``Cleanup`` step.
- ``cpu_s_per_vm``: CPU seconds (user + system, ``/proc/<pid>/stat``) from the start to the
  end of the plan of the four services and the controller together, per VM, and each one's
  own (``cpu_s_per_vm_<name>``); ``rss_peak_mib_<name>``: each one's peak RSS (VmHWM).
- ``max_disks_in_flight``: the most disks in flight seen in the cluster at once, counted
  from a watch on the target namespace's claims: a disk is in flight from its claim's
  creation until the claim is bound. Target: exactly ``disk_limit``, the plan's disk limit
  (``maxDisksInFlight``, default 10) or its source's (20), whichever is lower: never above
  it, and reaching it.
- ``plan_get_p50_ms``/``_p99_ms`` and ``plan_vms_p99_ms``: ``GET /plans/{id}`` and the plan's
  status (``GET /plans/{id}/vms``, the first page) timed at the client every
  ``--status-every`` s (2) while the plan runs: as a console would, not so often that the
  probe itself becomes the planner's load (its CPU counts in ``cpu_s_per_vm``).
- ``start_10000_s``: (unless ``--no-start-10000``; alone with ``--no-run``) a 10,000-VM
  plan created, validated and started until the last part of ``plan.started`` is on NATS
  (``bench/_planstart.py``, shared with ``bench/planner.py``, on a set-up of its own: a
  10,000-VM engine, the inventory and the planner), with ``create_10000_s``,
  ``validate_10000_s`` and ``started_10000_s`` its parts.

Targets (production defaults): ``cpu_s_per_vm`` <= 0.2; ``disk_overhead_p50_s`` <= 1,
``disk_overhead_p99_s`` <= 3; ``cleanup_p99_s`` <= 1; ``max_disks_in_flight`` <= the limit and
== the limit; ``plan_get_p99_ms`` and ``plan_vms_p99_ms`` < 100; ``start_10000_s`` <= 30.
"""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import _report
from bench import downtime as downtime_bench
from bench._planstart import start_large_plan
from bench.downtime import api, log, plan_maps, quantile, r2, step_times, wait_final
from shared.devservices import dev_services
from shared.settings import HoistSettings
from tools.stack import Stack, StackSpec

NAMESPACE = "fleet"
PREFIX = "benchfleet"
MiB = 1 << 20


def scenario(vms: int, seed: int = 25) -> dict[str, Any]:
    """``vms`` VMs up, a third of them with two disks; each disk 16-64 MiB, raw or qcow2,
    10-60 % data in large or scattered extents."""
    rng = random.Random(seed)

    def disk(name: str, bootable: bool) -> dict[str, Any]:
        return {
            "name": name,
            "size": f"{rng.choice((16, 32, 48, 64))}MiB",
            "allocated": round(rng.uniform(0.1, 0.6), 2),
            "format": rng.choice(("raw", "cow")),
            "layout": rng.choice(("large", "scattered")),
            "extent": rng.choice(("1MiB", "4MiB", "8MiB")),
            "bootable": bootable,
        }

    return {
        "networks": [{"name": "prod", "vlan": 100}],
        "vms": [
            {
                "name": f"fl-{i:04d}",
                "status": "up",
                "nics": [{"network": "prod", "model": "virtio"}],
                "disks": [disk(f"fl-{i:04d}-d{j}", j == 0) for j in range(rng.choice((1, 1, 2)))],
            }
            for i in range(vms)
        ],
    }


def production_env(quick: dict[str, str]) -> dict[str, str]:
    """Every setting the stack makes quicker than production, back at its default:
    ``HOIST_<SECTION>_<FIELD>`` read from ``shared.settings``'s models."""
    defaults = HoistSettings.model_construct()
    out: dict[str, str] = {}
    for key in quick:
        if not key.endswith("_SECONDS"):
            continue
        section, _, name = key.removeprefix("HOIST_").lower().partition("_")
        model = getattr(defaults, section, None)
        info = type(model).model_fields.get(name) if model is not None else None
        if info is not None and info.default is not None:
            out[key] = str(info.default)
    return out


def disk_limit(plan: dict[str, Any]) -> int:
    """The most disks of this plan copied at once: its own limit (the planner's default
    when it names none) and its source's, whichever is lower."""
    defaults = HoistSettings.model_construct().planner
    own = (plan.get("limits") or {}).get("maxDisksInFlight") or defaults.max_disks_in_flight
    return min(int(own), defaults.max_disks_in_flight_per_source)


# --- what runs beside the plan ----------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime, stime in clock ticks (USER_HZ)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


@dataclass
class InFlight:
    """Claims of the target namespace between their creation and their binding, from a
    watch (every change, no sampling gap)."""

    pending: set[str] = field(default_factory=set)
    peak: int = 0
    seen: int = 0

    def update(self, kind: str, claim: Any) -> None:
        name = claim.metadata.name
        if not (claim.spec and claim.spec.data_source_ref):
            return  # prime claims and others: a disk is its user claim
        bound = (claim.status and claim.status.phase) == "Bound"
        if kind == "DELETED" or bound:
            self.pending.discard(name)
        elif name not in self.pending:
            self.pending.add(name)
            self.seen += 1
            self.peak = max(self.peak, len(self.pending))


async def watch_claims(stack: Stack, into: InFlight) -> None:
    from kubernetes_asyncio import client, watch

    async with stack.kube() as kube:
        core = client.CoreV1Api(kube)
        version = ""
        while True:
            w = watch.Watch()
            async with w.stream(
                core.list_namespaced_persistent_volume_claim,
                NAMESPACE,
                resource_version=version or None,
                timeout_seconds=300,
            ) as events:
                async for event in events:
                    obj = event["object"]
                    version = obj.metadata.resource_version
                    into.update(event["type"], obj)


async def time_status(
    stack: Stack, plan_id: str, every: float, into: dict[str, list[float]]
) -> None:
    planner = stack.services["planner"]
    while True:
        for name, path in (("get", f"/plans/{plan_id}"), ("vms", f"/plans/{plan_id}/vms")):
            began = time.perf_counter()
            await api(planner, "GET", path)
            into[name].append((time.perf_counter() - began) * 1000)
        await asyncio.sleep(every)


# --- reading a finished plan -------------------------------------------------------------------

_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ (.*)$")
_DISK = re.compile(r"^engine \S+, disk ([0-9a-f-]{36}),")


@dataclass(frozen=True)
class Copy:
    """One populator's copy, as its own log says (wall clock, the pod's process)."""

    disk: str
    began: float
    ended: float


def copies_in(pod_logs: Path) -> dict[str, Copy]:
    """Every disk's last copy, by disk id, from the populator pods' logs the simulated
    kubelet keeps (``<namespace>/<pod>/<container>/<n>.log``)."""
    out: dict[str, Copy] = {}
    for path in pod_logs.glob(f"{NAMESPACE}/populate-*/*/*.log"):
        disk = None
        began = ended = None
        for line in path.read_text(errors="replace").splitlines():
            m = _LINE.match(line)
            if m is None:
                continue
            stamp = datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            message = m[2]
            if (d := _DISK.match(message)) is not None:
                disk = d[1]
            elif message.startswith("copy via "):
                began = stamp
            elif message.startswith("copied "):
                ended = stamp
        fresher = disk is not None and (disk not in out or out[disk].began < (began or 0))
        if disk and began is not None and ended is not None and fresher:
            out[disk] = Copy(disk, began, ended)
    return out


async def measure(args: Any, work: Path) -> dict[str, Any]:
    async with dev_services(use_env=False) as ds:
        quick = Stack(StackSpec(workdir=work, nats_url="", database_url="", token="")).environment()
        spec = StackSpec(
            workdir=work,
            nats_url=ds.nats_url,
            database_url=ds.database_url,
            token=secrets.token_urlsafe(24),
            ovirt=scenario(args.vms),
            prefix=PREFIX,
            namespace=NAMESPACE,
            env=production_env(quick),
        )
        mark = time.monotonic()
        async with Stack(spec) as stack:
            env = stack.environment()
            log(f"stack up in {time.monotonic() - mark:.1f} s (logs in {stack.logs})")
            common = await plan_maps(stack)
            names = [f"fl-{i:04d}" for i in range(args.vms)]
            plan = await api(
                stack.services["planner"],
                "POST",
                "/plans",
                json={
                    **common,
                    "name": "fleet",
                    "targetNamespace": NAMESPACE,
                    "vms": [{"name": n} for n in names],
                },
            )
            if plan["phase"] != "Ready":
                raise RuntimeError(f"plan not Ready: {plan['phase']} {plan.get('problems')}")
            processes = {
                **{n: s.proc for n, s in stack.services.items()},
                "controller": stack.controller.proc,
            }
            pids = {n: p.pid for n, p in processes.items() if p is not None}
            flight = InFlight()
            latencies: dict[str, list[float]] = {"get": [], "vms": []}
            watcher = asyncio.create_task(watch_claims(stack, flight))
            cpu0 = {n: cpu_seconds(pid) for n, pid in pids.items()}
            began = time.time()
            started = await api(stack.services["planner"], "POST", f"/plans/{plan['id']}/start")
            migration_id = str(started["migration"]["id"])
            timer = asyncio.create_task(
                time_status(stack, plan["id"], args.status_every, latencies)
            )
            log(f"plan of {args.vms} VMs started")
            try:
                await wait_final(stack, plan, migration_id, args.timeout)
            finally:
                timer.cancel()
            wall = time.time() - began
            cpu = {n: cpu_seconds(pid) - cpu0[n] for n, pid in pids.items()}
            rss = {n: peak_rss_mib(pid) for n, pid in pids.items()}
            watcher.cancel()
            views = list((await downtime_bench.pipelines(stack, migration_id)).values())
            copies = copies_in(stack.logs / "pods")
    limit = disk_limit(plan)
    return figures_of(env, views, copies, wall, cpu, rss, flight, latencies, limit)


def _task_ends(view: dict[str, Any], step: str) -> dict[str, tuple[float, float]]:
    for row in view["pipeline"]:
        if row["name"] == step:
            return {
                t["task"]: (_epoch(t["startedAt"]), _epoch(t["completedAt"])) for t in row["tasks"]
            }
    raise RuntimeError(f"VM {view['name']}: no {step} step")


def _epoch(iso: str | None) -> float:
    if iso is None:
        raise RuntimeError("a step or task of a Succeeded VM without its times")
    return datetime.fromisoformat(iso).timestamp()


def _spread(values: list[float], name: str, unit: str = "s") -> dict[str, float]:
    return {
        f"{name}_p50_{unit}": r2(statistics.median(values)),
        f"{name}_p99_{unit}": r2(quantile(values, 0.99)),
    }


def figures_of(
    env: dict[str, str],
    views: list[dict[str, Any]],
    copies: dict[str, Copy],
    wall: float,
    cpu: dict[str, float],
    rss: dict[str, float],
    flight: InFlight,
    latencies: dict[str, list[float]],
    limit: int,
) -> dict[str, Any]:
    overhead: list[float] = []
    starts: list[float] = []
    binds: list[float] = []
    to_vm: list[float] = []
    cleanup: list[float] = []
    copy_sum = 0.0
    steps: dict[str, list[float]] = {}
    for view in views:
        claimed = _task_ends(view, "DiskAllocation")
        bound = _task_ends(view, "DiskTransfer")
        for disk, (_, created) in claimed.items():
            copy = copies.get(disk)
            if copy is None:
                raise RuntimeError(f"VM {view['name']}: no populator log of disk {disk}")
            done = bound[disk][1]
            copy_sum += copy.ended - copy.began
            overhead.append((done - created) - (copy.ended - copy.began))
            starts.append(copy.began - created)
            binds.append(done - copy.ended)
        _, made = step_times(view, "VirtualMachineCreation")
        to_vm.append(made - max(end for _, end in bound.values()))
        for row in view["pipeline"]:
            if row.get("startedAt") and row.get("completedAt"):
                took = _epoch(row["completedAt"]) - _epoch(row["startedAt"])
                steps.setdefault(row["name"], []).append(took)
        began, ended = step_times(view, "Cleanup")
        cleanup.append(ended - began)
    vms = len(views)
    figures: dict[str, Any] = {
        "vms": vms,
        "disks": len(overhead),
        "disk_limit": limit,
        "wall_s": round(wall, 1),
        "copy_sum_s": round(copy_sum, 1),
        "overhead_ratio": r2(wall / copy_sum),
        "wall_vs_ideal": r2(wall / (copy_sum / limit)),
        **_spread(overhead, "disk_overhead"),
        **_spread(starts, "disk_start"),
        **_spread(binds, "disk_bind"),
        **_spread(to_vm, "vm_created"),
        **_spread(cleanup, "cleanup"),
        "cpu_s_per_vm": round(sum(cpu.values()) / vms, 3),
        **{f"cpu_s_per_vm_{n}": round(c / vms, 4) for n, c in cpu.items()},
        **{f"rss_peak_mib_{n}": r for n, r in rss.items()},
        "max_disks_in_flight": flight.peak,
        "claims_seen": flight.seen,
        **_spread(latencies["get"], "plan_get", "ms"),
        **_spread(latencies["vms"], "plan_vms", "ms"),
        "status_samples": len(latencies["get"]),
        "step_p50_s": {k: r2(statistics.median(v)) for k, v in steps.items()},
        "orchestrator_poll_s": float(env["HOIST_ORCHESTRATOR_POLL_SECONDS"]),
    }
    target = _report.target
    targets = {
        "cpu_s_per_vm": target(figures["cpu_s_per_vm"], "<=", 0.2),
        "disk_overhead_p50_s": target(figures["disk_overhead_p50_s"], "<=", 1.0),
        "disk_overhead_p99_s": target(figures["disk_overhead_p99_s"], "<=", 3.0),
        "cleanup_p99_s": target(figures["cleanup_p99_s"], "<=", 1.0),
        "max_disks_in_flight": target(flight.peak, "==", limit),
        "plan_get_p99_ms": target(figures["plan_get_p99_ms"], "<", 100),
        "plan_vms_p99_ms": target(figures["plan_vms_p99_ms"], "<", 100),
    }
    return {"bench": "fleet", "figures": figures, "targets": targets}


def main() -> int:
    p = _report.parser(__doc__)
    p.add_argument("--vms", type=int, default=1000)
    p.add_argument("--timeout", type=float, default=7200, help="seconds the plan may take")
    p.add_argument("--status-every", type=float, default=2.0, help="status GETs' period, s")
    p.add_argument("--no-start-10000", action="store_true", help="skip the 10,000-VM start")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--keep", action="store_true", help="keep the workdir (logs, volumes)")
    p.add_argument("--no-run", action="store_true", help="only the 10,000-VM start")
    args = p.parse_args()
    result: dict[str, Any] = {"bench": "fleet", "figures": {}, "targets": {}}
    if args.keep:
        work = Path(tempfile.mkdtemp(prefix="hoist-bench-fleet-", dir=args.workdir))
        log(f"workdir {work} (kept)")
        result = asyncio.run(run_all(args, work, result))
    else:
        with tempfile.TemporaryDirectory(prefix="hoist-bench-fleet-", dir=args.workdir) as t:
            result = asyncio.run(run_all(args, Path(t), result))
    return _report.emit(result, args.json)


async def run_all(args: Any, work: Path, result: dict[str, Any]) -> dict[str, Any]:
    """The plan run to its end, then (on a set-up of its own) the 10,000-VM start."""
    if not args.no_run:
        (work / "run").mkdir(parents=True, exist_ok=True)
        result = await measure(args, work / "run")
    if not args.no_start_10000:
        log("10,000-VM plan: create, validate, start")
        got = await start_large_plan(10_000, work / "start")
        result["figures"].update(
            {
                "start_10000_s": round(got["total_s"], 1),
                "create_10000_s": round(got["create_s"], 1),
                "validate_10000_s": round(got["validate_s"], 1),
                "started_10000_s": round(got["start_s"], 1),
            }
        )
        result["targets"]["start_10000_s"] = _report.target(
            result["figures"]["start_10000_s"], "<=", 30
        )
    return result


if __name__ == "__main__":
    sys.exit(main())
