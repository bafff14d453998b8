"""Benchmark: the inventory service on a 10,000-VM oVirt engine.

Set-up: private NATS and PostgreSQL, the cluster simulator (for the provider Secret), the
oVirt engine simulator with ``scenario.generate(10_000)`` (10,000 VMs with their disks and
NICs), and the inventory service as its own process with its defaults (10 s refresh).

Figures:

- ``initial_sync_s``: from ``POST /providers`` (connection test included) until the provider
  is Ready with every VM stored; ``peak_rss_mib`` of the service process (VmHWM).
- ``change_to_event_*``: a VM is changed in the engine (with the engine's event), and the
  clock runs until the ``vm changed`` event for it arrives on NATS; several changes, spread
  over the refresh interval.
- ``list_*``: ``GET /providers/{id}/vms?status=up&limit=100`` (a filtered page of 100) and
  the following pages by cursor, timed at the client. The baseline measured in the same run
  is ``GET /healthz`` on the same service (the floor of one HTTP round trip).

Targets from the issue: initial sync under 60 s, change-to-event under 15 s, list p99 under
50 ms.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import _report
from bench._planstart import engine_provider
from shared.bus import Bus
from shared.devservices import dev_services
from shared.settings import NatsSettings
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from sim.ovirt import scenario
from sim.ovirt.engine import Engine
from tools.processes import ServiceProcess

TOKEN = "bench-token-0123456789"  # noqa: S105 - a throwaway token of this run
PREFIX = "benchinv"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def run(vms: int, changes: int, lists: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="hoist-bench-inventory-"))
    inv = scenario.generate(vms, seed=7)
    async with (
        dev_services() as ds,
        Cluster(ClusterConfig(storage_root=work / "volumes")) as cluster,
        Engine(inv, [], work / "engine") as engine,
    ):
        kubeconfig = cluster.kubeconfig(work / "kubeconfig")
        svc = ServiceProcess(
            "inventory",
            {
                "HOIST_NATS_URL": ds.nats_url,
                "HOIST_NATS_PREFIX": PREFIX,
                "HOIST_DATABASE_URL": ds.database_url,
                "HOIST_KUBE_KUBECONFIG": str(kubeconfig),
                "HOIST_LOG_LEVEL": "WARNING",
            },
            work,
            TOKEN,
        )
        await svc.start()
        try:
            await svc.wait_ready(120)
            return await measure(svc, engine, ds.nats_url, vms, changes, lists)
        finally:
            await svc.terminate()


async def measure(
    svc: ServiceProcess, engine: Engine, nats_url: str, vms: int, changes: int, lists: int
) -> dict[str, Any]:
    auth = svc.auth()
    body = engine_provider(engine, "big-engine")
    started = time.monotonic()
    created = await svc.client.post("/api/v1/providers", json=body, headers=auth, timeout=120)
    created.raise_for_status()
    pid = created.json()["id"]
    while True:
        status = (await svc.client.get(f"/api/v1/providers/{pid}", headers=auth)).json()
        if status["status"]["phase"] == "Ready":
            break
        if time.monotonic() - started > 600:
            raise RuntimeError(f"no initial sync within 600 s: {status['status']}")
        await asyncio.sleep(0.1)
    initial_sync = time.monotonic() - started
    stored = status["status"]["counts"].get("vm", 0)
    assert svc.proc is not None
    rss = peak_rss_mib(svc.proc.pid)

    latencies = await change_to_event(engine, nats_url, pid, changes)

    path = f"/api/v1/providers/{pid}/vms"
    list_ms: list[float] = []
    floor_ms: list[float] = []
    cursor: str | None = None
    for _ in range(lists):
        params: dict[str, Any] = {"status": "up", "limit": 100}
        if cursor:
            params["cursor"] = cursor
        t = time.perf_counter()
        page = await svc.client.get(path, params=params, headers=auth)
        list_ms.append((time.perf_counter() - t) * 1000)
        page.raise_for_status()
        cursor = page.json()["next"]
        t = time.perf_counter()
        await svc.client.get("/healthz")
        floor_ms.append((time.perf_counter() - t) * 1000)

    server_ms = await server_mean_ms(svc, "/api/v1/providers/{ref}/{collection}")
    figures = {
        "vms": vms,
        "vms_stored": stored,
        "initial_sync_s": round(initial_sync, 2),
        "peak_rss_mib": rss,
        "change_to_event_p50_s": round(statistics.median(latencies), 2),
        "change_to_event_max_s": round(max(latencies), 2),
        "list_p50_ms": round(pct(list_ms, 0.5), 1),
        "list_p99_ms": round(pct(list_ms, 0.99), 1),
        "list_server_mean_ms": server_ms,
        "healthz_p50_ms": round(pct(floor_ms, 0.5), 1),
        "list_p50_vs_healthz": round(pct(list_ms, 0.5) / max(pct(floor_ms, 0.5), 0.01), 1),
    }
    return {
        "bench": "inventory",
        "figures": figures,
        "targets": {
            "initial_sync_s": _report.target(figures["initial_sync_s"], "<=", 60),
            "change_to_event_max_s": _report.target(figures["change_to_event_max_s"], "<=", 15),
            "list_p99_ms": _report.target(figures["list_p99_ms"], "<=", 50),
        },
    }


async def server_mean_ms(svc: ServiceProcess, route: str) -> float:
    """The service's own mean time for ``route`` (its request histogram), without the
    client and the loopback hop."""
    text = (await svc.client.get("/metrics")).text
    total = count = 0.0
    for line in text.splitlines():
        if f'route="{route}"' not in line:
            continue
        if line.startswith("hoist_http_request_seconds_sum"):
            total = float(line.split()[-1])
        elif line.startswith("hoist_http_request_seconds_count"):
            count = float(line.split()[-1])
    return round(total / count * 1000, 1) if count else 0.0


async def change_to_event(engine: Engine, nats_url: str, pid: str, count: int) -> list[float]:
    """Seconds from a change in the engine to its ``vm changed`` event, per change."""
    bus = Bus(NatsSettings(url=nats_url, prefix=PREFIX), source="/bench")
    await bus.connect()
    arrived: dict[str, float] = {}

    async def on_msg(msg: Any) -> None:
        data = json.loads(msg.data)["data"]
        arrived.setdefault(data["object_id"], time.monotonic())

    sub = await bus.nc.subscribe(f"{PREFIX}.inventory.provider.{pid}.vm.changed", cb=on_msg)
    rng = random.Random(3)
    candidates = list(engine.inv.vms.values())
    latencies: list[float] = []
    try:
        for _ in range(count):
            # Spread the changes over the refresh interval: some land just after a poll.
            await asyncio.sleep(rng.uniform(0.5, 4.0))
            vm = rng.choice(candidates)
            arrived.pop(vm.id, None)
            vm.memory = (vm.memory or 1 << 30) + (1 << 30)
            changed = time.monotonic()
            engine.inv.add_event(35, f"VM {vm.name} configuration was updated", vm_id=vm.id)
            while vm.id not in arrived:
                if time.monotonic() - changed > 120:
                    raise RuntimeError(f"no event for VM {vm.name} within 120 s")
                await asyncio.sleep(0.01)
            latencies.append(arrived[vm.id] - changed)
    finally:
        await sub.unsubscribe()
        await bus.drain()
    return latencies


def main() -> int:
    p = _report.parser(__doc__)
    p.add_argument("--vms", type=int, default=10_000)
    p.add_argument("--changes", type=int, default=6, help="changes timed to their event")
    p.add_argument("--lists", type=int, default=300, help="list requests timed")
    args = p.parse_args()
    result = asyncio.run(run(args.vms, args.changes, args.lists))
    return _report.emit(result, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
