"""Fixtures: a simulated cluster per test and clients that talk to it over HTTPS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config

from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig


@pytest.fixture
def cluster_config(tmp_path: Path) -> ClusterConfig:
    """The cluster's shape; a test module overrides this fixture to change it."""
    return ClusterConfig(storage_root=tmp_path / "volumes", bookmark_seconds=0.2)


@pytest.fixture
async def cluster(cluster_config: ClusterConfig) -> AsyncIterator[Cluster]:
    sim = Cluster(cluster_config)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration()
    await config.load_kube_config_from_dict(
        cluster.kubeconfig_dict(), client_configuration=configuration
    )
    async with client.ApiClient(configuration) as api_client:
        yield api_client
