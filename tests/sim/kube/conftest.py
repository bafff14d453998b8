"""Fixtures: a simulated cluster per test and clients that talk to it over HTTPS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from tests.conftest import kube_client


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
    async with kube_client(cluster) as api_client:
        yield api_client
