"""Fixtures of the whole-pipeline tests: per test module, a simulated cluster, a NATS
prefix of its own, the populator controller and the orchestrator as real processes, and the
events they publish."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from shared.devservices import DevServices
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from tests.conftest import kube_client
from tests.orchestrator.pipelines import (
    NAMESPACE,
    ControllerProcess,
    images,
    orchestrator,
    orchestrator_env,
)
from tools.processes import ServiceProcess


@pytest.fixture(scope="module")
async def kube_sim(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    base = tmp_path_factory.mktemp("kube")
    config = ClusterConfig(
        storage_root=base / "volumes", images=images(), namespaces=("hoist", NAMESPACE)
    )
    async with Cluster(config) as sim:
        yield sim


@pytest.fixture(scope="module")
async def kube(kube_sim: Cluster) -> AsyncIterator[client.ApiClient]:
    async with kube_client(kube_sim) as api:
        yield api


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"orch{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def env(
    request: pytest.FixtureRequest,
    servers: DevServices,
    database_url: str,
    prefix: str,
    kube_sim: Cluster,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    """The orchestrator's and controller's settings; a test module's ``ORCHESTRATOR_ENV``
    (a dict of ``HOIST_*`` settings) is added to them."""
    kubeconfig = kube_sim.kubeconfig(tmp_path_factory.mktemp("kubeconfig") / "config")
    extra: dict[str, str] = getattr(request.module, "ORCHESTRATOR_ENV", {})
    return orchestrator_env(servers, database_url, prefix, kubeconfig, **extra)


@pytest.fixture(scope="module")
async def running(
    env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[ServiceProcess, ControllerProcess]]:
    logs = tmp_path_factory.mktemp("logs")
    controller = ControllerProcess(env, logs)
    await controller.start()
    svc = orchestrator(env, logs)
    await svc.start()
    await svc.wait_ready(60)
    yield svc, controller
    await svc.terminate()
    await controller.stop()


class Events:
    """Every event on the migration and populator subjects of this test's prefix."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def of(self, kind: str, vm_id: str) -> list[dict[str, Any]]:
        return [
            e for e in self.items if e["type"].startswith(kind) and e["data"].get("vm_id") == vm_id
        ]


@pytest.fixture
async def events(servers: DevServices, prefix: str) -> AsyncIterator[Events]:
    import nats

    seen = Events()
    nc = await nats.connect(servers.nats_url)

    async def on(msg: Any) -> None:
        seen.items.append(json.loads(msg.data))

    await nc.subscribe(f"{prefix}.migration.>", cb=on)
    await nc.subscribe(f"{prefix}.populator.>", cb=on)
    yield seen
    await nc.drain()
