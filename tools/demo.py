"""``make demo``: bring up NATS, PostgreSQL, a cluster and the four services; show their health.

NATS and PostgreSQL are private servers started for the run (``shared.devservices``) unless
``HOIST_NATS_URL`` / ``HOIST_DATABASE_URL`` are set. The target cluster is the simulator
(``sim.kube``), with its kubeconfig written to ``.hoist-dev/kubeconfig``. Each service runs
as its own process, exactly as in a pod. The demo exits non-zero when any service fails to
become ready; ``--keep`` leaves everything running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from pathlib import Path

from shared.devservices import DevServices, dev_services, until_interrupted
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from tools.processes import SERVICES, ServiceProcess


async def run(keep: bool, timeout: float) -> int:
    token = os.environ.get("HOIST_AUTH_TOKENS", "").split(",")[0] or secrets.token_urlsafe(24)
    log_dir = Path(".hoist-dev/logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):  # this run's logs only, so the hint below is useful
        old.unlink()
    async with dev_services() as ds, Cluster(ClusterConfig()) as cluster:
        kubeconfig = cluster.kubeconfig(log_dir.parent / "kubeconfig")
        nodes = len(cluster.config.nodes)
        classes = ", ".join(sc["metadata"]["name"] for sc in cluster.config.storage_classes)
        print(f"Kubernetes  {cluster.url}  (simulated: {nodes} nodes; storage classes {classes})")
        print(f"            kubectl --kubeconfig {kubeconfig} get nodes")
        print(f"NATS        {ds.nats_url}{'' if ds.nats else '  (from HOIST_NATS_URL)'}")
        print(
            f"PostgreSQL  {_redact(ds.database_url)}"
            f"{'' if ds.postgres else '  (from HOIST_DATABASE_URL)'}"
        )
        env = _env(ds) | {"HOIST_KUBE_KUBECONFIG": str(kubeconfig.resolve())}
        services: list[ServiceProcess] = []
        for name in SERVICES:
            # The planner validates plans against the inventory, wherever that listens.
            extra = {"HOIST_PLANNER_INVENTORY_URL": services[0].url} if name == "planner" else {}
            services.append(ServiceProcess(name, env | extra, log_dir, token))
        try:
            await asyncio.gather(*(s.start() for s in services))
            ready = await asyncio.gather(*(s.wait_ready(timeout) for s in services))
            print()
            print(f"{'service':<13}{'url':<25}{'ready':<7}{'checks':<40}subscriptions")
            healthy = True
            for svc, state in zip(services, ready, strict=True):
                ok = state.get("status") == "ready"
                healthy &= ok
                checks = state.get("checks") or {"status": state.get("status")}
                subs = await _subscriptions(svc) if ok else "-"
                line = " ".join(f"{k}={v}" for k, v in checks.items())
                print(f"{svc.name:<13}{svc.url:<25}{'yes' if ok else 'NO':<7}{line:<40}{subs}")
            print()
            if not healthy:
                print(f"some services are not ready; their logs are in {log_dir}/")
                return 1
            print("all four services are healthy.")
            if keep:
                print(f"API token: {token}\nlogs: {log_dir}/\nCtrl-C stops everything.")
                await until_interrupted()
            return 0
        finally:
            codes = await asyncio.gather(*(s.terminate() for s in services))
            print(
                "stopped:", ", ".join(f"{s.name}={c}" for s, c in zip(services, codes, strict=True))
            )


def _env(ds: DevServices) -> dict[str, str]:
    return {"HOIST_NATS_URL": ds.nats_url, "HOIST_DATABASE_URL": ds.database_url}


async def _subscriptions(svc: ServiceProcess) -> str:
    r = await svc.client.get(f"/api/v1/{svc.name}/status", headers=svc.auth())
    subs = r.json().get("subscriptions", []) if r.status_code == 200 else []
    return ", ".join(s["name"] for s in subs) or "(publishes only)"


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keep", action="store_true", help="keep running until Ctrl-C")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to become ready")
    args = parser.parse_args()
    try:
        return asyncio.run(run(args.keep, args.timeout))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
