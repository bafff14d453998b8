"""Fixtures of the inventory tests: a simulated cluster (Secrets, a KubeVirt target) and the
inventory service as a real process against it, real NATS and PostgreSQL; one per module."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client

from shared.bus import Bus
from shared.devservices import DevServices
from shared.settings import NatsSettings
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from tests.conftest import TOKEN, eventually, kube_client
from tools.processes import ServiceProcess

PREFIX = "invsvc"


@pytest.fixture(scope="module")
async def kube_sim(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    base = tmp_path_factory.mktemp("kube")
    # A capacity limit, so the target publishes a CSIStorageCapacity the API can show.
    config = ClusterConfig(storage_root=base / "volumes", storage_capacity={"standard": 64 << 30})
    async with Cluster(config) as sim:
        sim.kubeconfig(base / "kubeconfig")
        yield sim


@pytest.fixture(scope="module")
async def kube(kube_sim: Cluster) -> AsyncIterator[client.ApiClient]:
    async with kube_client(kube_sim) as api:
        yield api


@pytest.fixture(scope="module")
async def inventory(
    servers: DevServices,
    database_url: str,
    kube_sim: Cluster,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[ServiceProcess]:
    logs = tmp_path_factory.mktemp("inventory")
    kubeconfig = kube_sim.kubeconfig(logs / "kubeconfig")
    proc = ServiceProcess(
        "inventory",
        {
            "HOIST_NATS_URL": servers.nats_url,
            "HOIST_NATS_PREFIX": PREFIX,
            "HOIST_DATABASE_URL": database_url,
            "HOIST_KUBE_KUBECONFIG": str(kubeconfig),
            "HOIST_INVENTORY_REFRESH_SECONDS": "0.5",
            "HOIST_INVENTORY_RETRY_MAX_SECONDS": "2",
            # A provider that hangs is given up on quickly (its own tests wait for that).
            "HOIST_INVENTORY_CONNECT_TIMEOUT_SECONDS": "3",
            "HOIST_INVENTORY_CALL_TIMEOUT_SECONDS": "4",
            "HOIST_LOG_FORMAT": "json",
        },
        logs,
        TOKEN,
    )
    await proc.start()
    await proc.wait_ready(60)
    yield proc
    await proc.terminate()
    bus = Bus(NatsSettings(url=servers.nats_url, prefix=PREFIX), source="/tests")
    await bus.connect()
    await bus.delete_streams()
    await bus.drain()


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:6]}"


async def api(svc: ServiceProcess, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {**svc.auth(), **kw.pop("headers", {})}
    return await svc.client.request(method, f"/api/v1{path}", headers=headers, **kw)


async def wait_phase(svc: ServiceProcess, pid: str, phase: str, within: float = 30) -> Any:
    seen: dict[str, Any] = {}

    async def check() -> bool:
        seen.update((await api(svc, "GET", f"/providers/{pid}")).json())
        return bool(seen["status"]["phase"] == phase)

    await eventually(check, within=within, what=f"provider phase {phase} (last: {seen})")
    return seen


async def secrets_of(kube: client.ApiClient) -> dict[str, dict[str, str]]:
    found = await client.CoreV1Api(kube).list_namespaced_secret(
        "hoist", label_selector="hoist.io/provider"
    )
    return {
        s.metadata.name: {k: base64.b64decode(v).decode() for k, v in (s.data or {}).items()}
        for s in found.items
    }
