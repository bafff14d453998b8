"""The controller as its Deployment runs it: ``python -m services.controller``
with nothing but ``HOIST_*`` settings; it serves /healthz, /readyz and /metrics, populates
a claim, and exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
from kubernetes_asyncio import client

from shared import populator as contract
from shared.devservices import DevServices, free_port
from sim.kube.cluster import Cluster
from sim.ovirt.engine import Engine
from tests.conftest import eventually
from tests.controller.conftest import (
    disk_ids,
    make_claim,
    make_populator,
    make_secret,
    wait_populated,
    wait_status,
)
from tests.controller.test_ovirt import ovirt_credentials
from tests.sim.ovirt.fixtures import new_disk

ROOT = Path(__file__).resolve().parents[2]


async def test_the_process_registers_populates_and_stops_on_sigterm(
    engine: Engine,
    kube_sim: Cluster,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    servers: DevServices,
    prefix: str,
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HOIST_KUBE_KUBECONFIG": str(kube_sim.kubeconfig(tmp_path / "kubeconfig")),
        "HOIST_NATS_URL": servers.nats_url,
        "HOIST_NATS_PREFIX": prefix,
        "HOIST_ORCHESTRATOR_CONTROLLER_PORT": str(port),
        "HOIST_ORCHESTRATOR_CONTROLLER_RESYNC_SECONDS": "2",
        "HOIST_LOG_FORMAT": "text",
    }
    log_path = tmp_path / "controller.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.controller",
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:

            async def ready() -> bool:
                assert proc.returncode is None, log_path.read_text()
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, within=60, what="the controller ready")
            assert (await http.get("/healthz")).json() == {"status": "ok"}

            disk = new_disk(engine, size="2MiB", allocated=1.0)
            await make_secret(core, "ovirt-src", ovirt_credentials(engine))
            await make_populator(
                custom,
                contract.OVIRT.name,
                "disk-p",
                {"engineUrl": engine.api_url, "engineSecretName": "ovirt-src", "diskId": disk.id},
            )
            await make_claim(
                core,
                "disk-p",
                contract.OVIRT.name,
                disk_ids("proc"),
                mode="Block",
                storage_class="standard",
            )
            await wait_populated(core, "disk-p")
            await wait_status(custom, contract.OVIRT.name, "disk-p", contract.Phase.SUCCEEDED)
            metrics = (await http.get("/metrics")).text
            assert 'hoist_populator_controller_populations_total{outcome="succeeded"} 1.0' in (
                metrics
            )
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
        assert code == 0, log_path.read_text()
        assert "populator controller stopped" in log_path.read_text()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
