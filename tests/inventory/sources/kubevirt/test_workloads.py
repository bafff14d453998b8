"""What a target already holds: VirtualMachines, PVCs and CSIStorageCapacity, loaded and
kept current by watches (the planner checks name collisions and capacity against them).

The module's cluster provisions volumes (provisioner and binder on) and has capacity
limits, so the capacities it publishes move as claims are provisioned and deleted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from services.inventory.items import Batch, Item
from services.inventory.sources.contract import ConnectionProblem, Reason
from services.inventory.sources.kubevirt.kinds import (
    persistent_volume_claim,
    storage_capacity,
    virtual_machine,
)
from shared.quantity import size_bytes
from shared.settings import KubeSettings
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig, NodeConfig
from tests.conftest import eventually
from tests.inventory.sources.kubevirt.conftest import SourceFactory, collect, keys

GiB = 1 << 30
NS = "apps"
VM_ARGS = ("kubevirt.io", "v1", NS, "virtualmachines")
POPULATOR_REF = {"apiGroup": "forklift.konveyor.io", "kind": "OvirtVolumePopulator", "name": "d1"}


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    """Overrides the package's cluster: this one provisions, within capacity limits."""
    config = ClusterConfig(
        storage_root=tmp_path_factory.mktemp("volumes"),
        bookmark_seconds=0.2,
        disabled=frozenset({"scheduler", "kubelet"}),
        namespaces=("hoist", NS),
        storage_capacity={"standard": 8 * GiB},
        nodes=[NodeConfig("node-1", storage_capacity=4 * GiB), NodeConfig("node-2")],
    )
    async with Cluster(config) as sim:
        yield sim


def vm_body(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            **spec,
            "template": {
                "spec": {
                    "domain": {
                        "devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}]},
                        "resources": {"requests": {"memory": "1Gi"}},
                    },
                    "volumes": [{"name": "root", "persistentVolumeClaim": {"claimName": name}}],
                }
            },
        },
    }


def pvc_body(name: str, size: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": "db"}},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
            "storageClassName": "standard",
            **spec,
        },
    }


async def free_bytes(api: client.ApiClient, name: str = "csisc-standard") -> int | None:
    found = await client.StorageV1Api(api).list_namespaced_csi_storage_capacity("kube-system")
    for item in found.items:
        if item.metadata.name == name:
            return size_bytes(item.capacity)
    return None


async def test_full_load_sees_vms_pvcs_and_capacities(
    api: client.ApiClient, make_source: SourceFactory
) -> None:
    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    await custom.create_namespaced_custom_object(
        *VM_ARGS,
        vm_body("web", {"hoist.io/plan": "p1", "hoist.io/vm": "v1", "tier": "front"}, running=True),
    )
    await custom.patch_namespaced_custom_object_status(
        "kubevirt.io",
        "v1",
        NS,
        "virtualmachines",
        "web",
        {"status": {"printableStatus": "Running"}},
        _content_type="application/merge-patch+json",
    )
    await custom.create_namespaced_custom_object(*VM_ARGS, vm_body("db", runStrategy="Manual"))
    await core.create_namespaced_persistent_volume_claim(NS, pvc_body("web", "1Gi"))
    await core.create_namespaced_persistent_volume_claim(
        NS, pvc_body("web-disk-1", "10Gi", volumeMode="Block", dataSourceRef=POPULATOR_REF)
    )

    async def web_bound() -> bool:
        claim = await core.read_namespaced_persistent_volume_claim("web", NS)
        return bool(claim.status.phase == "Bound") and await free_bytes(api) == 7 * GiB

    await eventually(web_bound, what="web bound and its capacity used")

    batch = await make_source().load()
    items = {item.key: item for item in batch.items}
    web = items["virtualmachine", f"{NS}/web"]
    assert (web.name, web.parent, web.status) == ("web", NS, "Running")
    assert web.data["namespace"] == NS
    assert web.data["uid"]
    assert web.data["labels"]["tier"] == "front"
    assert web.data["hoist"] == {"hoist.io/plan": "p1", "hoist.io/vm": "v1"}
    assert (web.data["running"], web.data["runStrategy"]) == (True, "Always")
    db = items["virtualmachine", f"{NS}/db"]
    # KubeVirt shows a VM that is not started as Stopped
    assert (db.status, db.data["running"], db.data["runStrategy"]) == ("Stopped", None, "Manual")
    assert db.data["hoist"] == {}

    claim = items["persistentvolumeclaim", f"{NS}/web"]
    assert (claim.name, claim.parent, claim.status) == ("web", NS, "Bound")
    assert claim.data["storageClassName"] == "standard"
    assert claim.data["volumeMode"] == "Filesystem"
    assert claim.data["accessModes"] == ["ReadWriteOnce"]
    assert (claim.data["requested"], claim.data["requestedBytes"]) == ("1Gi", GiB)
    assert claim.data["volumeName"].startswith("pvc-")
    assert claim.data["dataSourceRef"] is None
    assert claim.data["labels"] == {"app": "db"}
    assert "resourceVersion" not in str(claim.data)
    assert "managedFields" not in claim.data
    disk = items["persistentvolumeclaim", f"{NS}/web-disk-1"]
    assert disk.status == "Pending"  # left to its populator
    assert disk.data["volumeMode"] == "Block"
    assert disk.data["requestedBytes"] == 10 * GiB
    assert disk.data["dataSourceRef"] == POPULATOR_REF

    pool = items["storagecapacity", "kube-system/csisc-standard"]
    assert (pool.name, pool.parent) == ("csisc-standard", "standard")
    assert pool.data["storageClassName"] == "standard"
    assert pool.data["capacity"] == 7 * GiB
    assert pool.data["maximumVolumeSize"] == 8 * GiB
    assert pool.data["nodeTopology"] == {}
    node = items["storagecapacity", "kube-system/csisc-standard-wffc-node-1"]
    assert node.parent == "standard-wffc"
    assert node.data["capacity"] == node.data["maximumVolumeSize"] == 4 * GiB
    assert node.data["nodeTopology"] == {"matchLabels": {"kubernetes.io/hostname": "node-1"}}

    # An unchanged cluster loads to the same digests (nothing volatile is kept).
    again = await make_source().load()
    mine = {"virtualmachine", "persistentvolumeclaim", "storagecapacity"}
    assert {i.key: i.digest() for i in again.items if i.kind in mine} == {
        i.key: i.digest() for i in batch.items if i.kind in mine
    }


def latest(batch: Batch, key: tuple[str, str]) -> Item | None:
    found = [item for item in batch.items if item.key == key]
    return found[-1] if found else None


async def test_watches_follow_each_kind(api: client.ApiClient, make_source: SourceFactory) -> None:
    source = make_source()
    await source.load()
    start = await free_bytes(api)
    assert start is not None
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)

    await core.create_namespaced_persistent_volume_claim(NS, pvc_body("logs", "2Gi"))
    await custom.create_namespaced_custom_object(*VM_ARGS, vm_body("logs", runStrategy="Halted"))
    claim_key = ("persistentvolumeclaim", f"{NS}/logs")
    vm_key = ("virtualmachine", f"{NS}/logs")
    pool_key = ("storagecapacity", "kube-system/csisc-standard")

    def provisioned(b: Batch) -> bool:
        claim, pool = latest(b, claim_key), latest(b, pool_key)
        return (
            vm_key in keys(b)
            and claim is not None
            and claim.status == "Bound"
            and pool is not None
            and pool.data["capacity"] == start - 2 * GiB
        )

    batch = await collect(source, provisioned)
    vm = latest(batch, vm_key)
    assert vm is not None
    assert vm.data["runStrategy"] == "Halted"

    await custom.delete_namespaced_custom_object("kubevirt.io", "v1", NS, "virtualmachines", "logs")
    await core.delete_namespaced_persistent_volume_claim("logs", NS)

    def released(b: Batch) -> bool:
        pool = latest(b, pool_key)
        return (
            {claim_key, vm_key} <= set(b.deleted)
            and pool is not None
            and pool.data["capacity"] == start
        )

    batch = await collect(source, released)
    assert not {claim_key, vm_key} & keys(batch)


@pytest.fixture
async def old_cluster(tmp_path: Path) -> AsyncIterator[tuple[Cluster, KubeSettings]]:
    """A cluster without KubeVirt whose storage.k8s.io lacks CSIStorageCapacity."""
    config = ClusterConfig(
        storage_root=tmp_path / "v",
        kubevirt=False,
        disabled=frozenset({"scheduler", "kubelet", "provisioner", "binder", "capacity"}),
    )
    async with Cluster(config) as sim:
        sim.registry.remove(sim.kind("csistoragecapacities", "storage.k8s.io"))
        yield sim, KubeSettings(kubeconfig=sim.kubeconfig(tmp_path / "kubeconfig"))


async def test_a_cluster_without_kubevirt_or_capacities_still_loads(
    old_cluster: tuple[Cluster, KubeSettings], make_source: SourceFactory
) -> None:
    sim, kube = old_cluster
    source = make_source(kube=kube)
    batch = await source.load()
    assert {"virtualmachine", "storagecapacity", "persistentvolumeclaim"} <= batch.complete
    assert not [i for i in batch.items if i.kind in ("virtualmachine", "storagecapacity")]
    assert ("namespace", "default") in keys(batch)
    # The probe still refuses it as a target: Hoist could not create a VM there.
    with pytest.raises(ConnectionProblem) as refused:
        await source.probe()
    assert refused.value.reason == Reason.API_UNSUPPORTED

    pvcs = sim.kind("persistentvolumeclaims")
    sim.store.create(pvcs, pvc_body("late", "1Gi"), "default")
    await collect(source, lambda b: ("persistentvolumeclaim", "default/late") in keys(b))
    # The kinds answering 404 are listed again every interval, without failing a refresh.
    await asyncio.sleep(0.5)
    await source.refresh()


# -- normalizing odd objects ----------------------------------------------------------------


def test_odd_objects_normalize() -> None:
    vm = virtual_machine({"metadata": {"name": "v", "namespace": "n"}, "spec": {"running": False}})
    assert (vm.id, vm.status, vm.data["runStrategy"]) == ("n/v", "", "Halted")
    claim = persistent_volume_claim(
        {
            "metadata": {
                "name": "c",
                "namespace": "n",
                "deletionTimestamp": "2024-01-01T00:00:00Z",
            },
            "spec": {"resources": {"requests": {"storage": "lots"}}, "storageClassName": ""},
            "status": {"phase": "Bound"},
        }
    )
    assert (claim.status, claim.data["phase"]) == ("Terminating", "Bound")
    assert (claim.data["requested"], claim.data["requestedBytes"]) == ("lots", None)
    assert claim.data["storageClassName"] == ""  # no class, not the default class
    unset = persistent_volume_claim({"metadata": {"name": "d", "namespace": "n"}, "spec": {}})
    assert unset.data["storageClassName"] is None
    assert (unset.status, unset.data["requestedBytes"]) == ("Pending", None)
    unknown = storage_capacity(
        {"metadata": {"name": "s", "namespace": "kube-system"}, "storageClassName": "fast"}
    )
    assert unknown.parent == "fast"
    assert unknown.data["capacity"] is None
    assert unknown.data["maximumVolumeSize"] is None
    assert unknown.data["nodeTopology"] is None  # absent: no node reaches it
