"""Benchmark: the planner service at fleet scale (a plan of ``--vms`` VMs, 1,000 by default,
out of an engine of ``--engine-vms``, 5,000 by default or ``--vms`` if larger).

Set-up: ``bench/_planstart.py`` (private NATS and PostgreSQL, the cluster and oVirt engine
simulators, the inventory and planner as their own processes with their defaults; providers
synced, a network and a storage map). ``N`` below is ``--vms``.

Figures (each timed at the client, with its baseline measured in the same run):

- ``create_N_s``: ``POST /plans`` whose ``vmSelector`` (the first N names, no Critical
  concerns) picks N VMs; the plan is resolved and validated against the inventory before
  the answer. Baseline ``list_baseline_s``: the same client listing those N VMs from the
  inventory with ``detail=1`` (pages of 1,000, following cursors); ``create_vs_list`` is the
  ratio. ``validate_N_s``: ``POST /plans/{id}/validate`` (validation again). Median of
  ``--rounds`` rounds (list and create interleaved).
- ``start_N_s``: ``POST /plans/{id}/start`` until the last part of ``plan.started`` is on
  NATS (validated again, N VM rows with their pipelines written, the frozen plan published
  by the outbox in parts under the server's max_payload); ``plan_started_bytes`` is its size.
  ``plan_to_started_N_s``: ``create_N_s + validate_N_s + start_N_s`` of the started plan,
  what ``bench/fleet.py`` reports as ``start_10000_s``.
- ``projection_events_per_s``: the orchestrator's events for ``--project-vms`` VMs of the
  plan (all of them by default up to 1,000 VMs, else the first 1,000: each step Running
  then Completed, DiskAllocation and DiskTransfer tasks per disk, VmFinished Succeeded),
  published on JetStream as fast as the server acks them, VMs in waves of ``--wave`` with the
  stages interleaved, until the migration counts every one of them Succeeded (and the plan
  is Succeeded, confirmed by ``GET /plans/{id}``, when they are all its VMs). Baseline
  ``bare_consumer_events_per_s``: a bare ``shared.bus.Consumer`` on the same stream with the
  planner's concurrency whose handler only claims the inbox (``idempotent``, no-op effect),
  consuming the same stored events; ``projection_vs_bare`` is the ratio.
- Status latency while the projection runs: one client reading, every ``--poll`` seconds,
  ``GET /plans/{id}`` (``plan_get_*``), ``GET /plans/{id}/vms`` (a page of 100:
  ``plan_vms_*``) and ``GET /plans/{id}/migrations`` (``plan_migrations_*``), p50 and p99
  in ms; ``plan_status_p99_ms`` is the p99 of the three together.
- ``peak_rss_mib``: the planner process's peak resident memory (VmHWM).

Targets: ``create_vs_list`` <= 3, ``start_N_s`` <= 10 s per 1,000 VMs (10 s up to 1,000),
``plan_to_started_N_s`` <= 30 s (the issue's 10,000-VM target), ``projection_vs_bare``
>= 0.5, ``plan_get_p99_ms`` and ``plan_status_p99_ms`` <= 100 (the issue: < 100).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import _report
from bench._planstart import PREFIX, Fleet, api, create, fleet, list_selected, peak_rss_mib
from bench._planstart import start as start_plan
from bench._planstart import validate as validate_plan
from shared import catalog
from shared import envelope as env
from shared import payloads as p
from shared.bus import Bus, Consumer, Subscription
from shared.db.engine import create_engine, create_sessionmaker
from shared.db.messaging import idempotent, service_metadata
from shared.settings import ConsumerSettings, DatabaseSettings, NatsSettings
from tools.processes import ServiceProcess

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def run(args: Any) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="hoist-bench-planner-"))
    async with fleet(args.engine_vms or max(args.vms, 5_000), work) as f:
        return await measure(args, f)


# --- measuring -------------------------------------------------------------------------------


async def measure(args: Any, f: Fleet) -> dict[str, Any]:
    planner, n = f.planner, args.vms
    # 1. Creation against listing, interleaved rounds; the last plan is the one started.
    list_s, create_s, validate_s = [], [], []
    plan: dict[str, Any] = {}
    for i in range(args.rounds):
        t = time.perf_counter()
        listed = [
            vm
            for vm in await list_selected(f, n)
            if not any(c["category"] == "Critical" for c in vm.get("concerns") or [])
        ]
        list_s.append(time.perf_counter() - t)  # fmt: skip
        plan, seconds = await create(f, f"fleet-{i}", n)
        create_s.append(seconds)
        count = plan.get("vmCount", len(plan["vms"]))
        if count != len(listed):
            raise RuntimeError(f"the plan took {count} VMs, the listing {len(listed)}")
        validate_s.append(await validate_plan(f, plan["id"]))
        if i < args.rounds - 1:
            await api(planner, "DELETE", f"/plans/{plan['id']}")

    # 2. Start.
    started = await start_plan(f, plan["id"], args.start_wait)
    frozen = started["frozen"]
    selected = len(frozen["vms"])
    if started["seconds"] is None:
        relay = [line for line in planner.logs().splitlines() if "outbox relay" in line]
        started["error"] = json.loads(relay[-1])["message"] if relay else "no relay log line"

    # 3. Projection against a bare consumer of the same events, status read meanwhile.
    projected = frozen["vms"][: args.project_vms or (selected if selected <= 1000 else 1000)]
    events = orchestrator_events(frozen, projected, args.wave)
    bare = BareConsumer(f.nats_url, f.database_url)
    await bare.declare()
    try:
        reader = StatusReader(planner, plan["id"], args.poll)
        projection = await _project(planner, f.nats_url, plan["id"], len(projected),
                                    selected, events, reader)  # fmt: skip
        bare_s = await bare.consume(len(events))
    finally:
        await bare.close()
    assert planner.proc is not None
    rss = peak_rss_mib(planner.proc.pid)

    med = statistics.median
    events_per_s = len(events) / projection["seconds"]
    bare_per_s = len(events) / bare_s
    to_started = (
        med(create_s) + med(validate_s) + started["seconds"]
        if started["seconds"] is not None
        else None
    )
    figures: dict[str, Any] = {
        "source_vms": args.engine_vms or max(args.vms, 5_000),
        "plan_vms": selected,
        "plan_disks": sum(len(v["disks"]) for v in frozen["vms"]),
        "initial_sync_s": round(f.sync_s, 1),
        "list_baseline_s": round(med(list_s), 3),
        f"create_{n}_s": round(med(create_s), 3),
        "create_vs_list": round(med(create_s) / med(list_s), 2),
        f"validate_{n}_s": round(med(validate_s), 3),
        "start_request_s": round(started["request_s"], 3),
        f"start_{n}_s": started["seconds"] and round(started["seconds"], 3),
        f"plan_to_started_{n}_s": to_started and round(to_started, 3),
        "plan_started_bytes": started["bytes"],
        "plan_started_bytes_per_vm": round(started["bytes"] / max(selected, 1)),
        # How much of it is the VMs' ``detail`` (their source configuration, whole).
        "plan_started_detail_share": round(
            sum(len(json.dumps(v["detail"], separators=(",", ":"))) for v in frozen["vms"])
            / started["bytes"],
            2,
        ),
        "nats_max_payload": started["max_payload"],
        "plan_started_parts": started["parts"],
        "plan_started_largest_part_bytes": started["largest_part_bytes"],
        "plan_started_published": started["seconds"] is not None,
        "plan_started_error": started["error"],
        "projected_vms": len(projected),
        "events": len(events),
        "publish_events_per_s": round(len(events) / projection["publish_s"]),
        "projection_events_per_s": round(events_per_s, 1),
        "bare_consumer_events_per_s": round(bare_per_s, 1),
        "projection_vs_bare": round(events_per_s / bare_per_s, 3),
        **reader.figures(),
        "peak_rss_mib": rss,
    }
    missing = {"value": None, "target": "<= 10", "met": False}
    return {
        "bench": "planner",
        "figures": figures,
        "targets": {
            "create_vs_list": _report.target(figures["create_vs_list"], "<=", 3.0),
            # The start's own target is the 1,000-VM plan's; a larger plan's is the whole
            # of create, validate and start (the 10,000 VMs in 30 s).
            f"start_{n}_s": _report.target(figures[f"start_{n}_s"], "<=", 10 * max(1, n / 1000))
            if started["seconds"] is not None
            else {**missing, "target": f"<= {10 * max(1, n / 1000)}"},
            f"plan_to_started_{n}_s": _report.target(to_started, "<=", 30)
            if to_started is not None
            else {**missing, "target": "<= 30"},
            "projection_vs_bare": _report.target(figures["projection_vs_bare"], ">=", 0.5),
            "plan_get_p99_ms": _report.target(figures["plan_get_p99_ms"], "<=", 100),
            "plan_status_p99_ms": _report.target(figures["plan_status_p99_ms"], "<=", 100),
        },
    }


# --- the orchestrator's events -----------------------------------------------------------


Stage = Callable[[dict[str, Any], float], list[p.VmStepChanged | p.VmFinished]]


def _step(frozen: dict[str, Any], vm: dict[str, Any], step: p.Step, state: p.StepState,
          t: float, task: str | None = None, progress: tuple[int, int] | None = None,
          ) -> p.VmStepChanged:  # fmt: skip
    done = state is p.StepState.COMPLETED
    return p.VmStepChanged(
        plan_id=frozen["plan_id"],
        migration_id=frozen["migration_id"],
        vm_id=vm["vm_id"],
        step=step,
        state=state,
        task=task,
        started_at=T0 + timedelta(seconds=t),
        completed_at=T0 + timedelta(seconds=t + 1) if done else None,
        progress=p.StepProgress(completed=progress[0], total=progress[1]) if progress else None,
    )


def _stages(frozen: dict[str, Any]) -> list[Stage]:
    """What the orchestrator reports for one VM, in the order it happens."""
    S, R, C = p.Step, p.StepState.RUNNING, p.StepState.COMPLETED

    def whole(step: p.Step, state: p.StepState) -> Stage:
        return lambda vm, t: [_step(frozen, vm, step, state, t)]

    def tasks(step: p.Step, state: p.StepState, of: Callable[[dict[str, Any]], int]) -> Stage:
        return lambda vm, t: [
            _step(frozen, vm, step, state, t, d["disk_id"],
                  (of(d) if state is C else 0, of(d)))
            for d in vm["disks"]
        ]  # fmt: skip

    def finished(vm: dict[str, Any], t: float) -> list[p.VmStepChanged | p.VmFinished]:
        target = p.ResourceRef(namespace=frozen["target_namespace"], name=vm["target_name"])
        return [
            p.VmFinished(
                plan_id=frozen["plan_id"],
                migration_id=frozen["migration_id"],
                vm_id=vm["vm_id"],
                outcome=p.Outcome.SUCCEEDED,
                target_vm=target,
            )
        ]

    return [
        whole(S.INITIALIZE, R), whole(S.INITIALIZE, C),
        whole(S.POWER_OFF_SOURCE, R), whole(S.POWER_OFF_SOURCE, C),
        whole(S.DISK_ALLOCATION, R), tasks(S.DISK_ALLOCATION, C, lambda d: 1),
        whole(S.DISK_ALLOCATION, C),
        whole(S.DISK_TRANSFER, R), tasks(S.DISK_TRANSFER, R, lambda d: d["size_bytes"]),
        tasks(S.DISK_TRANSFER, C, lambda d: d["size_bytes"]), whole(S.DISK_TRANSFER, C),
        whole(S.VIRTUAL_MACHINE_CREATION, R), whole(S.VIRTUAL_MACHINE_CREATION, C),
        whole(S.CLEANUP, R), whole(S.CLEANUP, C),
        finished,
    ]  # fmt: skip


def orchestrator_events(
    frozen: dict[str, Any], vms: list[dict[str, Any]], wave: int
) -> list[tuple[str, bytes, str, str]]:
    """Every event of the migration of ``vms`` (of the frozen plan), encoded: VMs in waves of
    ``wave``, each wave's VMs going through the stages side by side (as the orchestrator
    runs VMs in parallel)."""
    stages = _stages(frozen)
    out: list[tuple[str, bytes, str, str]] = []
    for start in range(0, len(vms), wave):
        for k, stage in enumerate(stages):
            for vm in vms[start : start + wave]:
                for data in stage(vm, start + 10.0 * k):
                    spec = catalog.VM_FINISHED if isinstance(data, p.VmFinished) else (
                        catalog.VM_STEP_CHANGED
                    )  # fmt: skip
                    e = env.build(spec, data, source="/hoist/orchestrator")
                    out.append((e.subject, env.encode(e), e.id, e.type))
    return out


class StatusReader:
    """What a user's screen does while a plan runs: read the plan, a page of its VMs and
    its migrations, one after the other, every ``every`` seconds; each answer timed."""

    PATHS = {"plan_get": "", "plan_vms": "/vms?limit=100", "plan_migrations": "/migrations"}

    def __init__(self, planner: ServiceProcess, plan_id: str, every: float) -> None:
        self.planner, self.plan_id, self.every = planner, plan_id, every
        self.ms: dict[str, list[float]] = {k: [] for k in self.PATHS}

    async def run(self) -> None:
        while True:
            for key, tail in self.PATHS.items():
                t = time.perf_counter()
                await api(self.planner, "GET", f"/plans/{self.plan_id}{tail}")
                self.ms[key].append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(self.every)

    def figures(self) -> dict[str, Any]:
        def pct(values: list[float], q: int) -> float:
            if len(values) < 2:
                return round(values[0], 1) if values else 0.0
            return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 1)

        out: dict[str, Any] = {"status_reads": sum(len(v) for v in self.ms.values())}
        for key, values in self.ms.items():
            out[f"{key}_p50_ms"] = pct(values, 50)
            out[f"{key}_p99_ms"] = pct(values, 99)
        out["plan_status_p99_ms"] = pct([x for v in self.ms.values() for x in v], 99)
        return out


async def _project(
    planner: ServiceProcess,
    nats_url: str,
    plan_id: str,
    projected: int,
    total: int,
    events: list[tuple[str, bytes, str, str]],
    reader: StatusReader,
) -> dict[str, float]:
    """Publish ``events`` (batches awaited together, in order on one connection), ``reader``
    reading status meanwhile, and wait until the migration counts the ``projected`` VMs
    Succeeded (and, if they are all ``total``, the migration ended). Read from the API (its
    migrations every 0.5 s, then the plan), not from ``plan.status`` events."""
    bus = Bus(NatsSettings(url=nats_url, prefix=PREFIX), source="/hoist/orchestrator")
    await bus.connect()

    async def publish() -> float:
        t = time.perf_counter()
        for i in range(0, len(events), 256):
            await asyncio.gather(
                *(
                    bus.publish_raw(s, b, event_id=eid, ce_type=ty,
                                    delivery=catalog.Delivery.STREAM)
                    for s, b, eid, ty in events[i : i + 256]
                )
            )  # fmt: skip
        return time.perf_counter() - t

    reading = asyncio.create_task(reader.run())
    try:
        t = time.perf_counter()
        publishing = asyncio.create_task(publish())
        deadline = time.monotonic() + 1800
        while True:
            current = (await api(planner, "GET", f"/plans/{plan_id}/migrations"))["items"][0]
            counts = current["vms"]
            if counts["succeeded"] == projected and (
                projected < total or current["phase"] == "Succeeded"
            ):
                break
            if current["phase"] != "Running" or time.monotonic() > deadline:
                raise RuntimeError(f"migration {current['phase']} with {counts}")
            await asyncio.sleep(0.5)
        seconds = time.perf_counter() - t
        publish_s = await publishing
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        await bus.drain()
    got = await api(planner, "GET", f"/plans/{plan_id}")
    if got["status"]["migration"]["vms"]["succeeded"] != projected or (
        projected == total and got["phase"] != "Succeeded"
    ):
        raise RuntimeError(f"plan {got['phase']} with {got['status']['migration']['vms']}")
    return {"seconds": seconds, "publish_s": publish_s}


class BareConsumer:
    """The floor of a durable consumer with an inbox: claim the event id, nothing else."""

    NAME = "bench-bare"

    def __init__(self, nats_url: str, database_url: str) -> None:
        self.bus = Bus(NatsSettings(url=nats_url, prefix=PREFIX), source="/bench")
        self.engine = create_engine(
            DatabaseSettings(url=database_url), schema="planner", application="bench-bare"
        )
        inbox = service_metadata("planner").tables["planner.inbox"]
        self.handled = 0
        self.target = 0
        self.all_done = asyncio.Event()

        async def nothing(event: env.Envelope[Any], session: Any) -> None:
            self.handled += 1
            if self.handled >= self.target:
                self.all_done.set()

        handler = idempotent(create_sessionmaker(self.engine), inbox, self.NAME, nothing)
        sub = Subscription(
            self.NAME, (catalog.VM_STEP_CHANGED, catalog.VM_FINISHED), "bench", handler=handler
        )
        # The planner's own consumer concurrency (its default setting).
        self.consumer = Consumer(self.bus, sub, ConsumerSettings())

    async def declare(self) -> None:
        await self.bus.connect()
        await self.consumer.declare()

    async def consume(self, n: int) -> float:
        self.target = n
        t = time.perf_counter()
        self.consumer.start()
        await asyncio.wait_for(self.all_done.wait(), 1800)
        return time.perf_counter() - t

    async def close(self) -> None:
        await self.consumer.stop(5)
        await self.bus.drain()
        await self.engine.dispose()


def main() -> int:
    parser = _report.parser(__doc__)
    parser.add_argument("--vms", type=int, default=1_000, help="VMs of the plan")
    parser.add_argument(
        "--engine-vms", type=int, default=0, help="VMs in the source engine (default: "
        "5,000, or --vms if more)"
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="list/create/validate rounds")
    parser.add_argument("--wave", type=int, default=50, help="VMs whose events interleave")
    parser.add_argument(
        "--project-vms", type=int, default=0,
        help="VMs whose events are published (default: all, at most 1,000)",
    )  # fmt: skip
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between status reads")
    parser.add_argument(
        "--start-wait", type=float, default=120, help="seconds to wait for plan.started"
    )
    args = parser.parse_args()
    result = asyncio.run(run(args))
    summary(result, args.vms)
    return _report.emit(result, args.json)


def summary(result: dict[str, Any], n: int) -> None:
    """What the figures say, in sentences, before the table and the JSON line."""
    f, t = result["figures"], result["targets"]

    def verdict(name: str) -> str:
        return "met" if t[name]["met"] else "MISSED"

    print(
        f"planner at fleet scale: a {f['plan_vms']}-VM plan ({f['plan_disks']} disks) "
        f"of {f['source_vms']} source VMs"
    )
    print(
        f"  create {f[f'create_{n}_s']} s vs listing its VMs {f['list_baseline_s']} s: "
        f"{f['create_vs_list']}x (target <= 3): {verdict('create_vs_list')}; "
        f"validate again {f[f'validate_{n}_s']} s"
    )
    if f["plan_started_published"]:
        print(
            f"  start until plan.started on NATS: {f[f'start_{n}_s']} s (target <= 10): "
            f"{verdict(f'start_{n}_s')}; {f['plan_started_bytes']} bytes in "
            f"{f['plan_started_parts']} parts, the largest {f['plan_started_largest_part_bytes']}"
            f" of max_payload {f['nats_max_payload']}; create + validate + start "
            f"{f[f'plan_to_started_{n}_s']} s (target <= 30): {verdict(f'plan_to_started_{n}_s')}"
        )
    else:
        print(
            f"  start: plan.started NEVER PUBLISHED: {f['plan_started_bytes']} bytes, over "
            f"the server's max_payload of {f['nats_max_payload']} "
            f"({f['plan_started_bytes'] / f['nats_max_payload']:.2f}x); the relay says: "
            f"{f['plan_started_error']}; the start request itself took "
            f"{f['start_request_s']} s"
        )
    print(
        f"  projection of {f['projected_vms']} VMs {f['projection_events_per_s']} events/s vs "
        f"a bare consumer {f['bare_consumer_events_per_s']}/s: {f['projection_vs_bare']} "
        f"(target >= 0.5): {verdict('projection_vs_bare')}; planner peak RSS "
        f"{f['peak_rss_mib']} MiB"
    )
    print(
        f"  status while projecting ({f['status_reads']} reads), p50/p99 ms: plan "
        f"{f['plan_get_p50_ms']}/{f['plan_get_p99_ms']}, VM page {f['plan_vms_p50_ms']}/"
        f"{f['plan_vms_p99_ms']}, migrations {f['plan_migrations_p50_ms']}/"
        f"{f['plan_migrations_p99_ms']} (targets p99 <= 100): plan "
        f"{verdict('plan_get_p99_ms')}, status {verdict('plan_status_p99_ms')}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
