"""Fixtures of the progress tests: a simulated cluster whose pods serve populator metrics
(the stand-in ``metrics_pod`` and the real oVirt populator), and the progress service as
real processes against it, real NATS and PostgreSQL; a database and NATS prefix per module.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from kubernetes_asyncio import client

from shared import catalog
from shared import populator as contract
from shared.bus import Bus
from shared.devservices import DevServices
from shared.payloads import (
    Outcome,
    PopulatorPodFinished,
    PopulatorPodStarted,
    ResourceRef,
)
from shared.settings import NatsSettings
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from tests.conftest import TOKEN, create_database, drop_database, eventually, kube_client, plain_dsn
from tools.processes import ServiceProcess

METRICS_IMAGE = "quay.io/hoist-tests/metrics-pod"
OVIRT_IMAGE = "quay.io/hoist/ovirt-populator"
NS = "default"
ROOT = Path(__file__).resolve().parents[2]

#: Fast settings: a 1 s scrape interval keeps the suite quick (the default is 5 s).
FAST = {
    "HOIST_PROGRESS_SCRAPE_SECONDS": "1",
    "HOIST_PROGRESS_TIMEOUT_SECONDS": "2",
    "HOIST_PROGRESS_FLUSH_SECONDS": "0.2",
    "HOIST_PROGRESS_PUBLISH_MIN_SECONDS": "0.3",
    "HOIST_PROGRESS_HISTORY_SECONDS": "1",
    "HOIST_PROGRESS_HEARTBEAT_SECONDS": "0.25",
}


@pytest.fixture(scope="module")
async def kube_sim(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    base = tmp_path_factory.mktemp("kube")
    images = {
        METRICS_IMAGE: [sys.executable, "-m", "tests.progress.metrics_pod"],
        OVIRT_IMAGE: [sys.executable, "-m", "services.populators.ovirt"],
    }
    async with Cluster(ClusterConfig(storage_root=base / "volumes", images=images)) as sim:
        yield sim


@pytest.fixture(scope="module")
async def core(kube_sim: Cluster) -> AsyncIterator[client.CoreV1Api]:
    async with kube_client(kube_sim) as api:
        yield client.CoreV1Api(api)


@pytest.fixture(scope="module")
async def module_db(servers: DevServices) -> AsyncIterator[str]:
    """A database of this module alone: replicas of other modules never see its disks."""
    url = await create_database(servers.database_url)
    yield url
    await drop_database(url)


@pytest.fixture(scope="module")
def module_prefix() -> str:
    return f"prog{uuid.uuid4().hex[:8]}"


class Replicas:
    """Progress service processes of one module (start more, kill one, restart)."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: list[ServiceProcess] = []

    async def start(self, **extra: str) -> ServiceProcess:
        proc = ServiceProcess("progress", {**self.env, **extra}, self.logs, TOKEN)
        await proc.start()
        ready = await proc.wait_ready(60)
        assert ready.get("http_status") == 200, (ready, proc.logs()[-3000:])
        self.procs.append(proc)
        return proc

    async def stop_all(self) -> None:
        for proc in self.procs:
            if proc.exited is None:
                await proc.terminate()


@pytest.fixture(scope="module")
async def replicas(
    servers: DevServices,
    module_db: str,
    module_prefix: str,
    kube_sim: Cluster,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Replicas]:
    logs = tmp_path_factory.mktemp("progress")
    env = {
        "HOIST_NATS_URL": servers.nats_url,
        "HOIST_NATS_PREFIX": module_prefix,
        "HOIST_DATABASE_URL": module_db,
        "HOIST_KUBE_KUBECONFIG": str(kube_sim.kubeconfig(logs / "kubeconfig")),
        "HOIST_LOG_FORMAT": "json",
        **FAST,
    }
    group = Replicas(env, logs)
    yield group
    await group.stop_all()
    bus = Bus(NatsSettings(url=servers.nats_url, prefix=module_prefix), source="/tests")
    await bus.connect()
    await bus.delete_streams()
    await bus.drain()


@pytest.fixture(scope="module")
async def publisher(servers: DevServices, module_prefix: str) -> AsyncIterator[Bus]:
    bus = Bus(NatsSettings(url=servers.nats_url, prefix=module_prefix), source="/hoist/tests")
    await bus.connect()
    await bus.ensure_streams()
    yield bus
    await bus.drain()


def ids(stem: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:6]
    return {
        "plan_id": f"plan-{stem}-{tag}",
        "migration_id": f"mig-{tag}",
        "vm_id": f"vm-{stem}-{tag}",
        "disk_id": f"disk-{stem}-{tag}",
    }


def hoist_metadata(
    disk: dict[str, str], owner_uid: str, total: int, cluster: str = "local"
) -> dict[str, Any]:
    return {
        "labels": contract.pod_labels(
            disk["plan_id"], disk["migration_id"], disk["vm_id"], disk["disk_id"]
        ),
        "annotations": contract.pod_annotations(
            cluster_id=cluster, owner_uid=owner_uid, total_bytes=total, populator_kind="test"
        ),
    }


async def metrics_pod(
    core: client.CoreV1Api,
    name: str,
    owner_uid: str,
    *,
    rate: int = 4 << 20,
    total: int = 1 << 30,
    mode: str = "ok",
    metadata: dict[str, Any] | None = None,
    restart: str = "Never",
) -> str:
    """Create a pod serving populator metrics; returns its IP once it runs."""
    await core.create_namespaced_pod(
        NS,
        {
            "metadata": {"name": name, **(metadata or {})},
            "spec": {
                "restartPolicy": restart,
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "metrics",
                        "image": f"{METRICS_IMAGE}:1",
                        "args": [
                            f"--owner-uid={owner_uid}",
                            f"--rate={rate}",
                            f"--total={total}",
                            f"--mode={mode}",
                        ],
                        "env": [
                            # the kubelet's processes start elsewhere: find this checkout
                            {"name": "PYTHONPATH", "value": str(ROOT)},
                            {
                                "name": "POD_IP",
                                "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
                            },
                        ],
                        "ports": [{"name": "metrics", "containerPort": 8443}],
                    }
                ],
            },
        },
    )
    ip = await pod_ip(core, name)

    async def listening() -> bool:
        try:
            _, writer = await asyncio.open_connection(ip, 8443)
        except OSError:
            return False
        writer.close()
        return True

    await eventually(listening, within=30, what=f"pod {name} serving metrics")
    return ip


async def pod_ip(core: client.CoreV1Api, name: str) -> str:
    seen: dict[str, Any] = {}

    async def running() -> bool:
        pod = await core.read_namespaced_pod(name, NS)
        seen["phase"], seen["ip"] = pod.status.phase, pod.status.pod_ip
        return bool(pod.status.phase == "Running" and pod.status.pod_ip)

    await eventually(running, within=30, what=f"pod {name} running ({seen})")
    return str(seen["ip"])


async def announce(
    bus: Bus,
    disk: dict[str, str],
    pod: str,
    ip: str | None,
    owner_uid: str,
    total: int,
    cluster: str = "local",
) -> None:
    await bus.publish(
        catalog.POPULATOR_POD_STARTED,
        PopulatorPodStarted(
            **disk,
            cluster_id=cluster,
            pod=ResourceRef(namespace=NS, name=pod),
            pod_ip=ip,
            owner_uid=owner_uid,
            pvc=ResourceRef(namespace=NS, name=f"pvc-{disk['disk_id']}"),
            total_bytes=total,
            populator_kind="test",
        ),
    )


async def announce_finished(
    bus: Bus, disk: dict[str, str], pod: str, owner_uid: str, bytes_done: int | None = None
) -> None:
    await bus.publish(
        catalog.POPULATOR_POD_FINISHED,
        PopulatorPodFinished(
            **disk,
            cluster_id="local",
            pod=ResourceRef(namespace=NS, name=pod),
            owner_uid=owner_uid,
            outcome=Outcome.SUCCEEDED,
            bytes_transferred=bytes_done,
        ),
    )


class Rows:
    """Reads ``progress.disks`` and ``progress.history`` directly (what the service stored)."""

    def __init__(self, url: str) -> None:
        self.dsn = plain_dsn(url)

    async def disk(self, disk_id: str) -> dict[str, Any] | None:
        conn = await asyncpg.connect(self.dsn)
        try:
            row = await conn.fetchrow("SELECT * FROM progress.disks WHERE disk_id = $1", disk_id)
        finally:
            await conn.close()
        return dict(row) if row else None

    async def history(self, disk_id: str) -> list[dict[str, Any]]:
        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch(
                "SELECT * FROM progress.history WHERE disk_id = $1 ORDER BY at", disk_id
            )
        finally:
            await conn.close()
        return [dict(r) for r in rows]


@pytest.fixture(scope="module")
def rows(module_db: str) -> Rows:
    return Rows(module_db)


async def sampled_after(
    rows: Rows, disk_id: str, after: datetime, within: float = 20
) -> dict[str, Any]:
    """Wait for a sample of ``disk_id`` observed after ``after``; returns the row."""
    seen: dict[str, Any] = {}

    async def fresh() -> bool:
        row = await rows.disk(disk_id)
        seen.clear()
        seen.update(row or {})
        return bool(row and row["observed_at"] and row["observed_at"] > after)

    try:
        await eventually(fresh, within=within, every=0.1, what=f"a new sample of {disk_id}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last row: {seen}") from None
    return seen


def now() -> datetime:
    return datetime.now(UTC)


async def get(proc: ServiceProcess, path: str, **kw: Any) -> httpx.Response:
    return await proc.client.get(f"/api/v1/progress{path}", headers=proc.auth(), **kw)
