"""Storage capacity tracking in the simulated cluster: the CSIStorageCapacity objects the
hostpath provisioner publishes, following volumes as they come and go; and a cluster
without KubeVirt."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from shared.quantity import binary_si, size_bytes
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig, NodeConfig
from sim.kube.controllers.capacity import DRIVER, DRIVER_LABEL
from sim.kube.errors import ApiError
from sim.kube.store import Obj
from tests.conftest import eventually

GiB = 1 << 30
Factory = Callable[..., Awaitable[Cluster]]


@pytest.fixture
async def make_cluster(tmp_path: Path) -> AsyncIterator[Factory]:
    started: list[Cluster] = []

    async def make(**config: Any) -> Cluster:
        config.setdefault("storage_root", tmp_path / "storage")
        config.setdefault("disabled", frozenset({"kubelet", "scheduler"}))
        cluster = Cluster(ClusterConfig(**config))
        started.append(cluster)
        return await cluster.start(serve_api=False)

    yield make
    for cluster in started:
        await cluster.stop()


def capacities(cluster: Cluster) -> dict[str, Obj]:
    kind = cluster.kind("csistoragecapacities", "storage.k8s.io")
    return {e.obj["metadata"]["name"]: e.obj for e in cluster.store.scan(kind, "kube-system")}


def free(cluster: Cluster, name: str) -> int | None:
    found = capacities(cluster).get(name)
    return size_bytes(found["capacity"]) if found is not None else None


def create_claim(cluster: Cluster, name: str, size: str, storage_class: str) -> None:
    body = {
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
            "storageClassName": storage_class,
        },
    }
    cluster.store.create(cluster.kind("persistentvolumeclaims"), body, "default")


def test_binary_quantities() -> None:
    assert binary_si(3 * GiB) == "3Gi"
    assert binary_si(1536 << 20) == "1536Mi"
    assert binary_si(1500) == "1500"
    assert binary_si(0) == "0"
    assert size_bytes(binary_si(7 * GiB + 4096)) == 7 * GiB + 4096


async def test_no_limits_no_objects(make_cluster: Factory) -> None:
    cluster = await make_cluster()
    create_claim(cluster, "plain", "1Gi", "standard")
    await eventually(
        lambda: any(
            e.obj["spec"].get("storageClassName") == "standard"
            for e in cluster.store.scan(cluster.kind("persistentvolumes"))
        )
    )
    assert capacities(cluster) == {}


async def test_class_capacity_follows_volumes(make_cluster: Factory) -> None:
    cluster = await make_cluster(storage_capacity={"standard": 4 * GiB})
    await eventually(lambda: "csisc-standard" in capacities(cluster))
    published = capacities(cluster)["csisc-standard"]
    assert published["storageClassName"] == "standard"
    assert published["capacity"] == "4Gi"
    assert published["maximumVolumeSize"] == "4Gi"
    assert published["nodeTopology"] == {}  # every node reaches the class's pool
    assert published["metadata"]["labels"][DRIVER_LABEL] == DRIVER
    assert set(capacities(cluster)) == {"csisc-standard"}  # only limited classes

    create_claim(cluster, "one", "1Gi", "standard")
    await eventually(lambda: free(cluster, "csisc-standard") == 3 * GiB, what="3Gi free")
    cluster.store.delete(cluster.kind("persistentvolumeclaims"), "default", "one")
    # The binder releases the volume, the provisioner deletes it: the capacity comes back.
    await eventually(lambda: free(cluster, "csisc-standard") == 4 * GiB, what="4Gi free")

    # Deleted by someone else: published again. Its class deleted: gone for good.
    kind = cluster.kind("csistoragecapacities", "storage.k8s.io")
    cluster.store.delete(kind, "kube-system", "csisc-standard")
    await eventually(lambda: "csisc-standard" in capacities(cluster), what="republished")
    cluster.store.delete(cluster.kind("storageclasses", "storage.k8s.io"), None, "standard")
    await eventually(lambda: capacities(cluster) == {}, what="no capacity without the class")


async def test_node_capacity_of_wait_for_first_consumer_classes(make_cluster: Factory) -> None:
    cluster = await make_cluster(
        nodes=[NodeConfig("node-1", storage_capacity=2 * GiB), NodeConfig("node-2")],
        storage_capacity={"standard-wffc": 5 * GiB},
    )
    await eventually(lambda: "csisc-standard-wffc-node-1" in capacities(cluster))
    node = capacities(cluster)["csisc-standard-wffc-node-1"]
    assert node["nodeTopology"] == {"matchLabels": {"kubernetes.io/hostname": "node-1"}}
    assert (node["capacity"], node["maximumVolumeSize"]) == ("2Gi", "2Gi")
    # node-2 has no limit, and the Immediate class none either.
    assert set(capacities(cluster)) == {"csisc-standard-wffc", "csisc-standard-wffc-node-1"}

    create_claim(cluster, "local", "1536Mi", "standard-wffc")

    def select(obj: Obj) -> None:
        obj["metadata"]["annotations"] = {"volume.kubernetes.io/selected-node": "node-1"}

    cluster.store.mutate(cluster.kind("persistentvolumeclaims"), "default", "local", select)
    await eventually(lambda: free(cluster, "csisc-standard-wffc-node-1") == 512 << 20)
    assert free(cluster, "csisc-standard-wffc") == 5 * GiB - (1536 << 20)


async def test_capacity_objects_are_validated(make_cluster: Factory) -> None:
    cluster = await make_cluster()
    kind = cluster.kind("csistoragecapacities", "storage.k8s.io")
    with pytest.raises(ApiError) as refused:
        cluster.store.create(kind, {"metadata": {"name": "bad"}, "capacity": "1Gi"}, "default")
    assert refused.value.code == 422
    assert "storageClassName" in str(refused.value)


async def test_a_cluster_without_kubevirt(make_cluster: Factory) -> None:
    cluster = await make_cluster(kubevirt=False)
    assert "kubevirt.io" not in cluster.registry.groups()
    with pytest.raises(KeyError):
        cluster.kind("virtualmachines", "kubevirt.io")
