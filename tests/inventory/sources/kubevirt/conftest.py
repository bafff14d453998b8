"""Fixtures: one simulated cluster per module, Hoist's settings pointing at it, sources;
and ``collect``, which merges a source's refresh() batches until a change has arrived."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping

import pytest
from kubernetes_asyncio import client

from services.inventory.items import Batch
from services.inventory.sources.contract import Blocking, ProviderInfo, SourceContext
from services.inventory.sources.kubevirt import KubeVirtSource
from shared.kube import local_client
from shared.payloads import ProviderType
from shared.settings import InventorySettings, KubeSettings
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig

#: A token that may read single objects but not list them (403 on the probe's lists).
GETTER = "getter-token-0123456789"
VIEWER = "viewer-token-0123456789"


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    config = ClusterConfig(
        storage_root=tmp_path_factory.mktemp("volumes"),
        bookmark_seconds=0.2,
        disabled=frozenset({"scheduler", "kubelet", "provisioner", "binder"}),
        tokens={VIEWER: ["get", "list", "watch"], GETTER: ["get"]},
    )
    async with Cluster(config) as sim:
        yield sim


@pytest.fixture(scope="module")
def kube_settings(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> KubeSettings:
    path = cluster.kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")
    return KubeSettings(kubeconfig=path, namespace="hoist")


@pytest.fixture(scope="module")
def viewer_settings(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> KubeSettings:
    """Hoist's settings with a kubeconfig whose token may only get, list and watch."""
    path = cluster.kubeconfig(tmp_path_factory.mktemp("viewer") / "kubeconfig", token=VIEWER)
    return KubeSettings(kubeconfig=path, namespace="hoist")


@pytest.fixture(scope="module")
async def api(kube_settings: KubeSettings) -> AsyncIterator[client.ApiClient]:
    async with local_client(kube_settings) as api_client:
        yield api_client


@pytest.fixture(scope="module")
def blocking() -> Iterator[Blocking]:
    pool = Blocking(workers=2, per_provider=2, timeout=30)
    yield pool
    pool.shutdown()


SourceFactory = Callable[..., KubeVirtSource]


@pytest.fixture
async def make_source(
    kube_settings: KubeSettings, blocking: Blocking
) -> AsyncIterator[SourceFactory]:
    """``make_source(url, secret)``: a KubeVirtSource, closed after the test."""
    made: list[KubeVirtSource] = []
    settings = InventorySettings(
        connect_timeout_seconds=3, refresh_seconds=0.2, retry_max_seconds=1
    )

    def make(
        url: str = "", secret: Mapping[str, str] | None = None, kube: KubeSettings | None = None
    ) -> KubeVirtSource:
        provider_id = uuid.uuid4().hex[:12]
        provider = ProviderInfo(provider_id, f"target-{provider_id}", ProviderType.KUBEVIRT, url)
        context = SourceContext(blocking.for_provider(provider_id), settings, kube or kube_settings)
        source = KubeVirtSource(provider, dict(secret or {}), context)
        made.append(source)
        return source

    yield make
    for source in made:
        await source.close()


async def collect(
    source: KubeVirtSource, done: Callable[[Batch], bool], seconds: float = 10
) -> Batch:
    """Merge refresh() batches until ``done`` holds for the merge (hang guard ``seconds``)."""
    merged = Batch()
    complete: set[str] = set()

    async def loop() -> Batch:
        nonlocal complete
        while True:
            batch = await source.refresh()
            merged.items.extend(batch.items)
            merged.deleted.extend(batch.deleted)
            complete |= batch.complete
            merged.complete = frozenset(complete)
            if done(merged):
                return merged
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(loop(), seconds)


def keys(batch: Batch) -> set[tuple[str, str]]:
    return {item.key for item in batch.items}
