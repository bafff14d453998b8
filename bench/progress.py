"""Benchmark: the progress service scraping 2,000 populator metric endpoints every 5 s.

Set-up, all on two CPU cores (the whole process tree is pinned to two): private NATS and
PostgreSQL; one process serving the populators' own metrics page (``Progress.render`` of
``services.populators.common``) over TLS with a self-signed certificate on 2,000 loopback
addresses ``127.42.x.y:8443`` (the simulator's pod network), through the populators' own
metrics server (persistent connections), counters advancing with time; the progress
service as its own process with its defaults (5 s interval, one replica, pods reached
directly by IP). The 2,000 pods (500 VMs x 4 disks) are announced by
``populator.pod.started`` events.

Figures:

- ``staleness_*``: once a second, the age of the newest stored sample of every disk
  (``now() - observed_at`` in PostgreSQL); percentiles over all disks and checks.
- ``service_cpu_share``: CPU seconds of the service process per wall second (1.0 = one
  core) over the window, and as a share of the two cores.
- ``db_writes_per_s``: write statements the service issued per second (its
  ``hoist_progress_db_writes_total``), and ``rows_updated_per_s`` as PostgreSQL counted them.
- Baseline, same run, same machine: ``baseline_fetch_all_s``/``baseline_cpu_ms_per_fetch``,
  fetching every endpoint once with a plain aiohttp client (64 at a time, a new connection
  each) from the benchmark's own process: what one cold scrape round costs.

Target from the issue: staleness p99 under 7 s with one replica.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench import _report
from services.populators.common.metrics import MetricsServer, Progress, self_signed_context
from shared import catalog
from shared.bus import Bus
from shared.devservices import dev_services
from shared.payloads import PopulatorPodStarted, ResourceRef
from shared.settings import NatsSettings
from tools.processes import ServiceProcess

TOKEN = "bench-token-0123456789"  # noqa: S105 - a throwaway token of this run
PREFIX = "benchprog"
PORT = 8443
DISKS_PER_VM = 4


def address(i: int) -> str:
    return f"127.42.{i // 250 + 1}.{i % 250 + 1}"


def owner(i: int) -> str:
    return f"owner-{i:05d}"


# --- the endpoints (a child process) -------------------------------------------------------


async def serve(n: int) -> None:
    """Serve ``n`` populator metrics pages until stdin closes."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctx = self_signed_context()
    started = time.monotonic()
    total = 50 << 30

    class Advancing(Progress):
        """A populator's progress at a steady rate, 40-120 MiB/s, different per disk."""

        def __init__(self, i: int) -> None:
            super().__init__("openstack_populator_progress", owner(i))
            self.set_total(total)
            self.rate = (40 + i % 80) << 20

        def render(self) -> str:
            self.transferred = min(total, int(self.rate * (time.monotonic() - started)))
            return super().render()

    # The populators' own metrics server (persistent connections and all), one per address.
    servers = [
        await MetricsServer.start(Advancing(i), PORT, host=address(i), context=ctx)
        for i in range(n)
    ]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for s in servers:
        await s.stop()


# --- the benchmark ------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def baseline(n: int) -> tuple[float, float]:
    """Fetch every endpoint once (64 at a time): wall seconds and CPU ms per fetch."""
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sem = asyncio.Semaphore(64)
    connector = aiohttp.TCPConnector(ssl=ctx, limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            async with sem, session.get(f"https://{address(i)}:{PORT}/metrics") as r:
                await r.read()

        cpu0, t0 = time.process_time(), time.monotonic()
        await asyncio.gather(*(one(i) for i in range(n)))
        return time.monotonic() - t0, (time.process_time() - cpu0) * 1000 / n


async def writes(svc: ServiceProcess) -> float:
    text = (await svc.client.get("/metrics")).text
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("hoist_progress_db_writes_total{")
    )


async def run(n: int, seconds: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="hoist-bench-progress-"))
    endpoints = subprocess.Popen(  # noqa: ASYNC220 - started once, before the clock runs
        [sys.executable, "-m", "bench.progress", "--serve", str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert endpoints.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, endpoints.stdout.readline)
        assert line.strip() == "ready", line
        async with dev_services() as ds:
            base_wall, base_cpu = await baseline(n)
            svc = ServiceProcess(
                "progress",
                {
                    "HOIST_NATS_URL": ds.nats_url,
                    "HOIST_NATS_PREFIX": PREFIX,
                    "HOIST_DATABASE_URL": ds.database_url,
                    "HOIST_PROGRESS_WATCH_PODS": "false",
                    "HOIST_LOG_LEVEL": "WARNING",
                },
                work,
                TOKEN,
            )
            await svc.start()
            ready = await svc.wait_ready(60)
            assert ready.get("http_status") == 200, (ready, svc.logs()[-2000:])
            try:
                return await measure(
                    svc, ds.nats_url, ds.database_url, n, seconds, base_wall, base_cpu
                )
            finally:
                await svc.terminate()
    finally:
        if endpoints.stdin:
            endpoints.stdin.close()
        endpoints.wait(10)


async def measure(
    svc: ServiceProcess,
    nats_url: str,
    database_url: str,
    n: int,
    seconds: float,
    base_wall: float,
    base_cpu: float,
) -> dict[str, Any]:
    bus = Bus(NatsSettings(url=nats_url, prefix=PREFIX), source="/hoist/bench")
    await bus.connect()
    for i in range(n):
        vm = i // DISKS_PER_VM
        await bus.publish(
            catalog.POPULATOR_POD_STARTED,
            PopulatorPodStarted(
                plan_id=f"plan-{vm // 100}",
                migration_id=f"mig-{vm}",
                vm_id=f"vm-{vm:04d}",
                disk_id=f"disk-{i:05d}",
                cluster_id="local",
                pod=ResourceRef(namespace="bench", name=f"populate-{i:05d}"),
                pod_ip=address(i),
                owner_uid=owner(i),
                pvc=ResourceRef(namespace="bench", name=f"pvc-{i:05d}"),
                total_bytes=50 << 30,
                populator_kind="openstack",
            ),
        )
    await bus.drain()
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        t0 = time.monotonic()
        while True:  # warm-up: every disk sampled once, and one more interval
            got = await conn.fetchval(
                "SELECT count(*) FROM progress.disks WHERE observed_at IS NOT NULL"
            )
            if got >= n:
                break
            if time.monotonic() - t0 > 300:
                raise RuntimeError(
                    f"only {got} of {n} disks sampled after 300 s (too busy a machine to "
                    f"measure); service log tail:\n{svc.logs()[-3000:].strip()}"
                )
            await asyncio.sleep(0.5)
        warmup = time.monotonic() - t0
        await asyncio.sleep(5)
        assert svc.proc is not None
        pid = svc.proc.pid
        rows0 = await conn.fetchval(
            "SELECT n_tup_upd FROM pg_stat_user_tables "
            "WHERE schemaname = 'progress' AND relname = 'disks'"
        )
        cpu0, w0, t0 = cpu_seconds(pid), await writes(svc), time.monotonic()
        ages: list[float] = []
        missing = 0
        while time.monotonic() - t0 < seconds:
            rows = await conn.fetch(
                "SELECT extract(epoch FROM clock_timestamp() - observed_at) AS age "
                "FROM progress.disks WHERE state = 'running'"
            )
            ages.extend(float(r["age"]) for r in rows if r["age"] is not None)
            missing += sum(1 for r in rows if r["age"] is None)
            await asyncio.sleep(1.0)
        wall = time.monotonic() - t0
        cpu = cpu_seconds(pid) - cpu0
        statements = await writes(svc) - w0
        await asyncio.sleep(1)  # pg_stat lags a little behind
        rows1 = await conn.fetchval(
            "SELECT n_tup_upd FROM pg_stat_user_tables "
            "WHERE schemaname = 'progress' AND relname = 'disks'"
        )
    finally:
        await conn.close()
    p99 = round(pct(ages, 0.99), 2)
    figures = {
        "endpoints": n,
        "interval_s": 5.0,
        "warmup_s": round(warmup, 1),
        "window_s": round(wall, 1),
        "staleness_p50_s": round(pct(ages, 0.50), 2),
        "staleness_p99_s": p99,
        "staleness_max_s": round(max(ages, default=0.0), 2),
        "never_sampled": missing,
        "service_cpu_cores": round(cpu / wall, 3),
        "service_cpu_share_pct": round(100 * cpu / wall / 2, 1),
        "service_cpu_ms_per_scrape": round(1000 * cpu / (n * wall / 5.0), 3),
        "db_writes_per_s": round(statements / wall, 2),
        "rows_updated_per_s": round(((rows1 or 0) - (rows0 or 0)) / wall, 1),
        "baseline_fetch_all_s": round(base_wall, 2),
        "baseline_cpu_ms_per_fetch": round(base_cpu, 3),
    }
    return {
        "bench": "progress",
        "figures": figures,
        "targets": {"staleness_p99_s": _report.target(p99, "<=", 7.0)},
    }


def main() -> int:
    p = _report.parser(__doc__)
    p.add_argument("--endpoints", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=30.0, help="measurement window")
    p.add_argument("--serve", type=int, help=argparse_hidden())
    args = p.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return 0
    cpus = sorted(os.sched_getaffinity(0))[:2]
    os.sched_setaffinity(0, cpus)  # the whole tree: endpoints, NATS, PostgreSQL, service
    return _report.emit(asyncio.run(run(args.endpoints, args.seconds)), args.json)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
