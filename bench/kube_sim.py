"""Benchmark: the cluster simulator under a migration-sized load.

A cluster (`python -m sim.kube`, its own process, with its storage controllers: every claim
is provisioned and bound before measuring; no scheduler or kubelet, which would start 2,000
processes) holds 2,000 pods and 4,000 PVCs in 20 namespaces while 50 watchers
follow them (pods and PVCs, cluster-wide, per namespace and by label). A writer patches
objects, stamping each patch with the time it was sent; each watcher computes how late the
event reaches it. Meanwhile lists of every shape are timed. The client is a light HTTP
client in one separate process, so its own parsing does not hide the server's latency.

The baseline measured in the same run is `GET /version` (the floor of one round trip).
Targets from the issue: list p99 and watch-event p99 under 100 ms.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench import _report

NAMESPACES = 20
WORKLOAD = ("scheduler", "kubelet")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def start_cluster(workdir: Path) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    args = [sys.executable, "-m", "sim.kube", "--kubeconfig", str(workdir / "kubeconfig")]
    for name in WORKLOAD:
        args += ["--disable", name]
    process = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    started = json.loads(await asyncio.wait_for(process.stdout.readline(), 60))
    return process, started


def pod(ns: str, n: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"populate-{n}",
            "namespace": ns,
            "labels": {"hoist.io/plan": f"plan-{n % 10}", "hoist.io/vm": f"vm-{n}"},
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "populate",
                    "image": "quay.io/hoist/ovirt-populator:1",
                    "args": ["--volume-path=/mnt/disk.img", f"--owner-uid=uid-{n}"],
                    "ports": [{"name": "metrics", "containerPort": 8443}],
                }
            ],
        },
    }


def pvc(ns: str, n: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": f"disk-{n}",
            "namespace": ns,
            "labels": {"hoist.io/plan": f"plan-{n % 10}", "hoist.io/disk": f"d-{n}"},
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "volumeMode": "Block",
            "resources": {"requests": {"storage": "20Gi"}},
        },
    }


class Client:
    def __init__(self, url: str, token: str, ca: bytes) -> None:
        self.url = url
        context = ssl.create_default_context(cadata=ca.decode())
        self.session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token}"},
            connector=aiohttp.TCPConnector(ssl=context, limit=200),
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
        )

    async def request(self, method: str, path: str, **kw: Any) -> tuple[int, bytes]:
        async with self.session.request(method, self.url + path, **kw) as reply:
            return reply.status, await reply.read()

    async def close(self) -> None:
        await self.session.close()


async def create_all(http: Client, pods: int, claims: int) -> float:
    for n in range(NAMESPACES):
        await http.request("POST", "/api/v1/namespaces", json={"metadata": {"name": f"m{n}"}})
    jobs = [(f"m{n % NAMESPACES}", "pods", pod(f"m{n % NAMESPACES}", n)) for n in range(pods)]
    jobs += [
        (f"m{n % NAMESPACES}", "persistentvolumeclaims", pvc(f"m{n % NAMESPACES}", n))
        for n in range(claims)
    ]
    queue: asyncio.Queue[tuple[str, str, dict[str, Any]]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def worker() -> None:
        while not queue.empty():
            ns, plural, obj = queue.get_nowait()
            status, body = await http.request("POST", f"/api/v1/namespaces/{ns}/{plural}", json=obj)
            if status != 201:
                raise RuntimeError(f"create failed {status}: {body[:200]!r}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(16)))
    return len(jobs) / (time.perf_counter() - started)


async def settle(http: Client, claims: int) -> float:
    """Wait until the provisioner and binder have bound every claim: measure steady state."""
    started = time.perf_counter()
    while True:
        _, body = await http.request("GET", "/api/v1/persistentvolumeclaims")
        items = json.loads(body)["items"]
        if sum(1 for i in items if i.get("status", {}).get("phase") == "Bound") >= claims:
            return time.perf_counter() - started
        await asyncio.sleep(1.0)


async def watcher(
    http: Client,
    path: str,
    params: dict[str, str],
    rv: str,
    latencies: list[float],
    stop: asyncio.Event,
) -> None:
    query = {**params, "watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true"}
    async with http.session.get(http.url + path, params=query) as reply:
        while not stop.is_set():
            try:
                line = await asyncio.wait_for(reply.content.readline(), 0.5)
            except TimeoutError:
                continue
            if not line:
                return
            event = json.loads(line)
            sent = ((event["object"].get("metadata") or {}).get("annotations") or {}).get(
                "bench.hoist.io/sent"
            )
            if sent and event["type"] == "MODIFIED":
                latencies.append(time.time() - float(sent))


async def writer(http: Client, pods: int, claims: int, count: int, rate: float) -> None:
    interval = 1.0 / rate
    for i in range(count):
        n = i * 7919 % (pods + claims)
        if n < pods:
            path = f"/api/v1/namespaces/m{n % NAMESPACES}/pods/populate-{n}"
        else:
            m = n - pods
            path = f"/api/v1/namespaces/m{m % NAMESPACES}/persistentvolumeclaims/disk-{m}"
        patch = {"metadata": {"annotations": {"bench.hoist.io/sent": repr(time.time())}}}
        await http.request(
            "PATCH",
            path,
            data=json.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        await asyncio.sleep(interval)


async def lister(
    http: Client, list_ms: list[float], floor_ms: list[float], stop: asyncio.Event
) -> None:
    shapes = [
        "/api/v1/pods",
        "/api/v1/persistentvolumeclaims",
        "/api/v1/namespaces/m3/persistentvolumeclaims",
        "/api/v1/pods?labelSelector=hoist.io%2Fplan%3Dplan-4",
        "/api/v1/persistentvolumeclaims?limit=500",
        "/api/v1/namespaces/m7/pods?fieldSelector=status.phase%3DPending",
    ]
    i = 0
    while not stop.is_set():
        started = time.perf_counter()
        status, _ = await http.request("GET", shapes[i % len(shapes)])
        assert status == 200
        list_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        await http.request("GET", "/version")
        floor_ms.append((time.perf_counter() - started) * 1000)
        i += 1
        await asyncio.sleep(0.05)


async def run(pods: int, claims: int, watchers: int, patches: int, rate: float) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="hoist-bench-kube-"))
    process, started = await start_cluster(workdir)
    config = yaml.safe_load(Path(started["kubeconfig"]).read_text())
    import base64

    ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"])
    http = Client(started["url"], config["users"][0]["user"]["token"], ca)
    try:
        create_rate = await create_all(http, pods, claims)
        settle_s = await settle(http, claims)
        _, body = await http.request("GET", "/api/v1/pods?limit=1")
        rv = json.loads(body)["metadata"]["resourceVersion"]
        latencies: list[float] = []
        stop = asyncio.Event()
        paths: list[tuple[str, dict[str, str]]] = []
        for w in range(watchers):
            if w % 5 == 0:
                paths.append(("/api/v1/pods", {}))
            elif w % 5 == 1:
                paths.append(("/api/v1/persistentvolumeclaims", {}))
            elif w % 5 == 2:
                paths.append((f"/api/v1/namespaces/m{w % NAMESPACES}/pods", {}))
            elif w % 5 == 3:
                paths.append(
                    (
                        "/api/v1/persistentvolumeclaims",
                        {"labelSelector": f"hoist.io/plan=plan-{w % 10}"},
                    )
                )
            else:
                paths.append((f"/api/v1/namespaces/m{w % NAMESPACES}/persistentvolumeclaims", {}))
        tasks = [asyncio.create_task(watcher(http, p, q, rv, latencies, stop)) for p, q in paths]
        list_ms: list[float] = []
        floor_ms: list[float] = []
        lists = asyncio.create_task(lister(http, list_ms, floor_ms, stop))
        await asyncio.sleep(0.5)
        await writer(http, pods, claims, patches, rate)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(lists, *tasks, return_exceptions=True)
    finally:
        await http.close()
        process.terminate()
        await process.wait()
    watch_ms = [v * 1000 for v in latencies]
    return {
        "pods": pods,
        "pvcs": claims,
        "watchers": watchers,
        "patches": patches,
        "create_per_s": round(create_rate, 1),
        "bind_all_s": round(settle_s, 1),
        "list_requests": len(list_ms),
        "list_p50_ms": round(pct(list_ms, 0.50), 2),
        "list_p99_ms": round(pct(list_ms, 0.99), 2),
        "version_p50_ms": round(pct(floor_ms, 0.50), 2),
        "watch_events": len(watch_ms),
        "watch_p50_ms": round(pct(watch_ms, 0.50), 2),
        "watch_p99_ms": round(pct(watch_ms, 0.99), 2),
        "watch_max_ms": round(max(watch_ms, default=0.0), 2),
        "list_p50_over_version_p50": round(
            statistics.median(list_ms) / max(statistics.median(floor_ms), 1e-9), 1
        ),
    }


def main() -> int:
    parser = _report.parser(__doc__)
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--pvcs", type=int, default=4000)
    parser.add_argument("--watchers", type=int, default=50)
    parser.add_argument("--patches", type=int, default=1500)
    parser.add_argument("--rate", type=float, default=150.0, help="patches per second")
    args = parser.parse_args()
    figures = asyncio.run(run(args.pods, args.pvcs, args.watchers, args.patches, args.rate))
    targets = {
        name: _report.target(figures[name], "<=", 100) for name in ("list_p99_ms", "watch_p99_ms")
    }
    return _report.emit({"bench": "kube_sim", "figures": figures, "targets": targets}, args.json)


if __name__ == "__main__":
    sys.exit(main())
