"""Pods in a remote target cluster are found by watching that cluster (not only from
events): a disk announced there whose pod is replaced is followed to the new pod."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator

import pytest
import yaml
from kubernetes_asyncio import client

from shared.bus import Bus
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from tests.conftest import kube_client
from tests.progress.conftest import (
    METRICS_IMAGE,
    Replicas,
    Rows,
    announce,
    hoist_metadata,
    ids,
    metrics_pod,
    now,
    sampled_after,
)
from tools.processes import ServiceProcess


@pytest.fixture(scope="module")
async def svc(replicas: Replicas) -> ServiceProcess:
    return await replicas.start()


@pytest.fixture(scope="module")
async def remote(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    base = tmp_path_factory.mktemp("remote")
    cfg = ClusterConfig(
        storage_root=base / "volumes",
        images={METRICS_IMAGE: [sys.executable, "-m", "tests.progress.metrics_pod"]},
        pod_network="127.43.0.0/16",  # apart from the local cluster's pods
    )
    async with Cluster(cfg) as sim:
        yield sim


@pytest.fixture(scope="module")
async def remote_core(remote: Cluster) -> AsyncIterator[client.CoreV1Api]:
    async with kube_client(remote) as api:
        yield client.CoreV1Api(api)


async def test_a_replaced_pod_in_a_remote_cluster_is_found_by_its_watch(
    svc: ServiceProcess,
    core: client.CoreV1Api,
    remote: Cluster,
    remote_core: client.CoreV1Api,
    publisher: Bus,
    rows: Rows,
) -> None:
    provider = f"remote-{uuid.uuid4().hex[:6]}"
    await core.create_namespaced_secret(
        "hoist",
        {
            "metadata": {"name": f"hoist-provider-{provider}"},
            "stringData": {
                "url": remote.url,
                "kubeconfig": yaml.safe_dump(remote.kubeconfig_dict()),
            },
        },
    )
    d, owner = ids("remotewatch"), str(uuid.uuid4())
    # Announced with a pod that is already gone: nothing can be scraped from it.
    await announce(publisher, d, "pop-gone", "127.43.255.254", owner, 1 << 30, cluster=provider)
    started = now()
    name = f"pop-{d['disk_id']}"
    await metrics_pod(
        remote_core, name, owner, metadata=hoist_metadata(d, owner, 1 << 30, cluster=provider)
    )
    row = await sampled_after(rows, d["disk_id"], started, within=45)
    assert row["pod"] == name
    assert row["source"] == "watch"
    assert row["bytes_done"] > 0
