"""Storage in the simulated cluster: provisioning, binding, reclaiming, profiles, scheduling.

Each test runs a cluster without HTTP and drives it through the store, as the API server
would; what it checks is what a user of a real cluster sees (phases, annotations, events)
plus where the data lives on this machine.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from sim.kube.cluster import CONTROLLERS, Cluster
from sim.kube.config import HOSTPATH_PROVISIONER, NO_PROVISIONER, ClusterConfig, NodeConfig
from sim.kube.controllers.volumes import quantity, size_bytes
from sim.kube.faults import ProvisioningFault
from sim.kube.store import Obj
from tests.conftest import eventually

Factory = Callable[..., Awaitable[Cluster]]


def unavailable() -> set[str]:
    """Controllers whose module is not there yet (they are written in parallel)."""
    return {
        name
        for name, target in CONTROLLERS.items()
        if importlib.util.find_spec(target.partition(":")[0]) is None
    }


@pytest.fixture
async def make_cluster(tmp_path: Path) -> AsyncIterator[Factory]:
    started: list[Cluster] = []

    async def make(*, disabled: set[str] | None = None, **config: Any) -> Cluster:
        config.setdefault("storage_root", tmp_path / "storage")
        off = frozenset((disabled if disabled is not None else {"kubelet"}) | unavailable())
        cluster = Cluster(ClusterConfig(disabled=off, **config))
        started.append(cluster)
        return await cluster.start(serve_api=False)

    yield make
    for cluster in started:
        await cluster.stop()


@pytest.fixture
async def cluster(make_cluster: Factory) -> Cluster:
    return await make_cluster()


# -- helpers ----------------------------------------------------------------------------


def claim(
    name: str,
    size: str = "1Gi",
    storage_class: str | None = "standard",
    mode: str = "Filesystem",
    **spec: Any,
) -> Obj:
    body: Obj = {
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
            "volumeMode": mode,
            **spec,
        },
    }
    if storage_class is not None:
        body["spec"]["storageClassName"] = storage_class
    return body


def static_volume(
    name: str, path: Path, size: str = "1Gi", storage_class: str = "local-static", **spec: Any
) -> Obj:
    path.mkdir(parents=True, exist_ok=True)
    return {
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": storage_class,
            "local": {"path": str(path)},
            **spec,
        },
    }


def on_node(node: str) -> Obj:
    return {
        "required": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
                    ]
                }
            ]
        }
    }


def pvc(cluster: Cluster, name: str, namespace: str = "default") -> Obj:
    return cluster.store.get(cluster.kind("persistentvolumeclaims"), namespace, name)


def pv(cluster: Cluster, name: str) -> Obj:
    return cluster.store.get(cluster.kind("persistentvolumes"), None, name)


def phase(obj: Obj) -> str | None:
    return (obj.get("status") or {}).get("phase")


def events(cluster: Cluster, name: str, reason: str | None = None) -> list[Obj]:
    return [
        e.obj
        for e in cluster.store.scan(cluster.kind("events"))
        if e.obj["involvedObject"]["name"] == name and reason in (None, e.obj["reason"])
    ]


def has_event(cluster: Cluster, name: str, reason: str) -> bool:
    return bool(events(cluster, name, reason))


def create_claim(cluster: Cluster, body: Obj) -> Obj:
    return cluster.store.create(cluster.kind("persistentvolumeclaims"), body, "default")


async def bound(cluster: Cluster, name: str) -> Obj:
    await eventually(lambda: phase(pvc(cluster, name)) == "Bound", what=f"{name} Bound")
    return pvc(cluster, name)


def annotate(cluster: Cluster, name: str, key: str, value: str) -> None:
    def change(obj: Obj) -> None:
        obj["metadata"].setdefault("annotations", {})[key] = value

    cluster.store.mutate(cluster.kind("persistentvolumeclaims"), "default", name, change)


# -- quantities -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1Gi", 1 << 30),
        ("10Mi", 10 << 20),
        ("512Ki", 512 << 10),
        ("2Ti", 2 << 40),
        ("1k", 1000),
        ("1.5G", 1_500_000_000),
        ("5M", 5_000_000),
        ("123", 123),
        ("1e3", 1000),
        ("0.5Gi", 1 << 29),
    ],
)
def test_storage_quantities(text: str, expected: int) -> None:
    assert size_bytes(text) == expected


def test_cpu_quantities_and_garbage() -> None:
    assert quantity("500m") * 1000 == 500
    with pytest.raises(ValueError, match="quantities must match"):
        quantity("ten gigs")


# -- dynamic provisioning ---------------------------------------------------------------


async def test_immediate_filesystem_claim_gets_a_directory(cluster: Cluster) -> None:
    created = create_claim(cluster, claim("data", "2Gi"))
    claimed = await bound(cluster, "data")
    name = f"pvc-{created['metadata']['uid']}"
    assert claimed["spec"]["volumeName"] == name
    assert claimed["status"]["capacity"] == {"storage": "2Gi"}
    assert claimed["status"]["accessModes"] == ["ReadWriteOnce"]
    notes = claimed["metadata"]["annotations"]
    assert notes["volume.kubernetes.io/storage-provisioner"] == HOSTPATH_PROVISIONER
    assert notes["volume.beta.kubernetes.io/storage-provisioner"] == HOSTPATH_PROVISIONER
    assert notes["pv.kubernetes.io/bind-completed"] == "yes"
    volume = pv(cluster, name)
    assert phase(volume) == "Bound"
    assert volume["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == (
        HOSTPATH_PROVISIONER
    )
    assert volume["spec"]["claimRef"]["uid"] == created["metadata"]["uid"]
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert volume["spec"]["storageClassName"] == "standard"
    assert "nodeAffinity" not in volume["spec"]
    path = Path(volume["spec"]["hostPath"]["path"])
    assert path.is_dir()
    assert path.parent == cluster.config.storage_root
    assert events(cluster, "data", "ProvisioningSucceeded")


async def test_immediate_block_claim_gets_a_sparse_file(cluster: Cluster) -> None:
    create_claim(cluster, claim("disk", "3Gi", mode="Block"))
    claimed = await bound(cluster, "disk")
    volume = pv(cluster, claimed["spec"]["volumeName"])
    assert volume["spec"]["volumeMode"] == "Block"
    path = Path(volume["spec"]["hostPath"]["path"])
    assert path.is_file()
    assert path.stat().st_size == 3 << 30
    assert path.stat().st_blocks * 512 < 1 << 20  # sparse: nothing written yet


async def test_wait_for_first_consumer_waits_for_a_selected_node(cluster: Cluster) -> None:
    create_claim(cluster, claim("late", storage_class="standard-wffc"))
    await eventually(lambda: has_event(cluster, "late", "WaitForFirstConsumer"))
    assert phase(pvc(cluster, "late")) == "Pending"
    assert not list(cluster.store.scan(cluster.kind("persistentvolumes")))
    annotate(cluster, "late", "volume.kubernetes.io/selected-node", "node-2")
    claimed = await bound(cluster, "late")
    volume = pv(cluster, claimed["spec"]["volumeName"])
    assert volume["spec"]["nodeAffinity"] == on_node("node-2")
    assert Path(volume["spec"]["local"]["path"]).is_dir()


async def test_class_capacity_limit_fails_with_an_event(make_cluster: Factory) -> None:
    cluster = await make_cluster(storage_capacity={"standard": 3 << 30})
    create_claim(cluster, claim("first", "2Gi"))
    await bound(cluster, "first")
    create_claim(cluster, claim("second", "2Gi"))
    await eventually(lambda: has_event(cluster, "second", "ProvisioningFailed"))
    (event,) = events(cluster, "second", "ProvisioningFailed")
    assert event["type"] == "Warning"
    assert "insufficient capacity" in event["message"]
    assert phase(pvc(cluster, "second")) == "Pending"
    # Freeing capacity lets the retry succeed.
    cluster.store.delete(cluster.kind("persistentvolumeclaims"), "default", "first")
    await bound(cluster, "second")


async def test_node_capacity_limit_fails_with_an_event(make_cluster: Factory) -> None:
    cluster = await make_cluster(
        nodes=[NodeConfig("node-1", storage_capacity=1 << 30), NodeConfig("node-2")]
    )
    create_claim(cluster, claim("big", "2Gi", storage_class="standard-wffc"))
    annotate(cluster, "big", "volume.kubernetes.io/selected-node", "node-1")
    await eventually(lambda: has_event(cluster, "big", "ProvisioningFailed"))
    assert "on node node-1" in events(cluster, "big", "ProvisioningFailed")[0]["message"]
    assert phase(pvc(cluster, "big")) == "Pending"
    # As the external-provisioner does on ResourceExhausted: let the scheduler pick again.
    await eventually(
        lambda: (
            "volume.kubernetes.io/selected-node"
            not in (pvc(cluster, "big")["metadata"].get("annotations") or {})
        )
    )


async def test_clone_copies_the_source_volume(cluster: Cluster) -> None:
    create_claim(cluster, claim("origin"))
    origin = pv(cluster, (await bound(cluster, "origin"))["spec"]["volumeName"])
    (Path(origin["spec"]["hostPath"]["path"]) / "disk.img").write_bytes(b"original")
    source = {"kind": "PersistentVolumeClaim", "name": "origin"}
    create_claim(cluster, claim("copy", dataSourceRef=source))
    copy = pv(cluster, (await bound(cluster, "copy"))["spec"]["volumeName"])
    assert (Path(copy["spec"]["hostPath"]["path"]) / "disk.img").read_bytes() == b"original"


async def test_snapshot_source_that_does_not_exist_fails(cluster: Cluster) -> None:
    source = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "snap"}
    create_claim(cluster, claim("restored", dataSourceRef=source))
    await eventually(lambda: has_event(cluster, "restored", "ProvisioningFailed"))
    assert "VolumeSnapshot" in events(cluster, "restored", "ProvisioningFailed")[0]["message"]
    assert not has_event(cluster, "restored", "UnrecognizedDataSourceKind")


async def test_provisioning_fault_fails_then_recovers(cluster: Cluster) -> None:
    cluster.faults.provisioning["standard"] = ProvisioningFault(fail="backend is on fire")
    create_claim(cluster, claim("unlucky"))
    await eventually(lambda: has_event(cluster, "unlucky", "ProvisioningFailed"))
    (event,) = events(cluster, "unlucky", "ProvisioningFailed")
    assert event["message"] == (
        'failed to provision volume with StorageClass "standard": backend is on fire'
    )
    assert phase(pvc(cluster, "unlucky")) == "Pending"
    cluster.faults.provisioning.clear()
    await bound(cluster, "unlucky")


async def test_provisioning_fault_delays(cluster: Cluster) -> None:
    cluster.faults.provisioning["*"] = ProvisioningFault(delay=0.5)
    create_claim(cluster, claim("slow"))
    await eventually(lambda: has_event(cluster, "slow", "Provisioning"))
    assert phase(pvc(cluster, "slow")) == "Pending"
    assert not list(cluster.store.scan(cluster.kind("persistentvolumes")))
    await bound(cluster, "slow")


async def test_reclaim_delete_removes_the_data(cluster: Cluster) -> None:
    create_claim(cluster, claim("scratch"))
    claimed = await bound(cluster, "scratch")
    name = claimed["spec"]["volumeName"]
    path = Path(pv(cluster, name)["spec"]["hostPath"]["path"])
    (path / "file").write_text("bytes")
    cluster.store.delete(cluster.kind("persistentvolumeclaims"), "default", "scratch")
    pvs = cluster.kind("persistentvolumes")
    await eventually(lambda: cluster.store.find(pvs, None, name) is None, what="PV deleted")
    assert not path.exists()


async def test_reclaim_retain_keeps_a_released_volume(make_cluster: Factory) -> None:
    classes = [
        {
            "metadata": {"name": "keep"},
            "provisioner": HOSTPATH_PROVISIONER,
            "reclaimPolicy": "Retain",
        }
    ]
    cluster = await make_cluster(storage_classes=classes)
    create_claim(cluster, claim("kept", storage_class="keep"))
    name = (await bound(cluster, "kept"))["spec"]["volumeName"]
    cluster.store.delete(cluster.kind("persistentvolumeclaims"), "default", "kept")
    await eventually(lambda: phase(pv(cluster, name)) == "Released")
    assert Path(pv(cluster, name)["spec"]["hostPath"]["path"]).is_dir()


# -- static volumes ---------------------------------------------------------------------

STATIC_IMMEDIATE = {
    "metadata": {"name": "static"},
    "provisioner": NO_PROVISIONER,
    "volumeBindingMode": "Immediate",
    "reclaimPolicy": "Retain",
}


async def test_static_claim_binds_the_smallest_fitting_volume(
    make_cluster: Factory, tmp_path: Path
) -> None:
    cluster = await make_cluster(storage_classes=[STATIC_IMMEDIATE])
    pvs = cluster.kind("persistentvolumes")
    for name, size in (("small", "1Gi"), ("medium", "5Gi"), ("large", "10Gi")):
        cluster.store.create(pvs, static_volume(name, tmp_path / name, size, "static"))
    block = static_volume("block", tmp_path / "block", "5Gi", "static", volumeMode="Block")
    cluster.store.create(pvs, block)
    await eventually(lambda: phase(pv(cluster, "small")) == "Available")
    create_claim(cluster, claim("two", "2Gi", storage_class="static"))
    claimed = await bound(cluster, "two")
    assert claimed["spec"]["volumeName"] == "medium"
    assert claimed["status"]["capacity"] == {"storage": "5Gi"}
    volume = pv(cluster, "medium")
    assert phase(volume) == "Bound"
    assert volume["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    # No volume left that fits: the claim waits, with the PV controller's event.
    create_claim(cluster, claim("huge", "20Gi", storage_class="static"))
    await eventually(lambda: has_event(cluster, "huge", "ExternalProvisioning"))
    assert NO_PROVISIONER in events(cluster, "huge", "ExternalProvisioning")[0]["message"]
    assert phase(pvc(cluster, "huge")) == "Pending"


async def test_static_wffc_binds_only_a_volume_on_the_selected_node(
    cluster: Cluster, tmp_path: Path
) -> None:
    pvs = cluster.kind("persistentvolumes")
    cluster.store.create(pvs, static_volume("on-1", tmp_path / "a", nodeAffinity=on_node("node-1")))
    cluster.store.create(pvs, static_volume("on-2", tmp_path / "b", nodeAffinity=on_node("node-2")))
    create_claim(cluster, claim("local", storage_class="local-static"))
    await eventually(lambda: has_event(cluster, "local", "WaitForFirstConsumer"))
    annotate(cluster, "local", "volume.kubernetes.io/selected-node", "node-2")
    assert (await bound(cluster, "local"))["spec"]["volumeName"] == "on-2"


async def test_populator_claim_binds_an_empty_static_volume(
    cluster: Cluster, tmp_path: Path
) -> None:
    """populators.md: a user PVC binds straight to an Available static PV, with no data."""
    pvs = cluster.kind("persistentvolumes")
    empty = tmp_path / "empty"
    cluster.store.create(pvs, static_volume("empty", empty, "10Gi", ""))
    source = {"apiGroup": "hoist.io", "kind": "OvirtVolumePopulator", "name": "disk-1"}
    create_claim(cluster, claim("vm-disk", storage_class="", dataSourceRef=source))
    assert (await bound(cluster, "vm-disk"))["spec"]["volumeName"] == "empty"
    assert not any(empty.iterdir())
    # Nothing registers the kind, so the data-source validator warned about it.
    (warning,) = events(cluster, "vm-disk", "UnrecognizedDataSourceKind")
    assert warning["type"] == "Warning"


async def test_provisioner_leaves_populator_claims_alone(cluster: Cluster) -> None:
    populators = cluster.registry.by_kind("populator.storage.k8s.io", "VolumePopulator")
    assert populators is not None
    cluster.store.create(
        populators,
        {
            "metadata": {"name": "ovirt"},
            "sourceKind": {"group": "hoist.io", "kind": "OvirtVolumePopulator"},
        },
    )
    source = {"apiGroup": "hoist.io", "kind": "OvirtVolumePopulator", "name": "disk-1"}
    create_claim(cluster, claim("target", dataSourceRef=source))
    create_claim(cluster, claim("plain"))
    await bound(cluster, "plain")
    assert phase(pvc(cluster, "target")) == "Pending"
    assert not events(cluster, "target", "UnrecognizedDataSourceKind")
    assert not events(cluster, "target", "Provisioning")


# -- binder -----------------------------------------------------------------------------


async def test_claim_ref_rebind_loses_the_prime(cluster: Cluster) -> None:
    """What a volume populator does once its pod has filled the prime claim's volume."""
    create_claim(cluster, claim("prime-1"))
    source = {"apiGroup": "hoist.io", "kind": "OvirtVolumePopulator", "name": "disk-1"}
    user = create_claim(cluster, claim("user", dataSourceRef=source))
    volume_name = (await bound(cluster, "prime-1"))["spec"]["volumeName"]

    def rebind(obj: Obj) -> None:
        meta = user["metadata"]
        obj["spec"]["claimRef"] = {
            "kind": "PersistentVolumeClaim",
            "apiVersion": "v1",
            "namespace": "default",
            "name": "user",
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
        }
        obj["metadata"]["annotations"]["hoist.io/populated-from"] = "default/disk-1"

    cluster.store.mutate(cluster.kind("persistentvolumes"), None, volume_name, rebind)
    claimed = await bound(cluster, "user")
    assert claimed["spec"]["volumeName"] == volume_name
    assert claimed["status"]["capacity"] == {"storage": "1Gi"}
    await eventually(lambda: phase(pvc(cluster, "prime-1")) == "Lost")
    (misbound,) = events(cluster, "prime-1", "ClaimMisbound")
    assert misbound["type"] == "Warning"
    assert misbound["message"] == (
        "Two claims are bound to the same volume, this one is bound incorrectly"
    )
    assert phase(pv(cluster, volume_name)) == "Bound"
    # Deleting the lost prime must not release the user's volume.
    cluster.store.delete(cluster.kind("persistentvolumeclaims"), "default", "prime-1")
    create_claim(cluster, claim("later"))
    await bound(cluster, "later")
    assert phase(pv(cluster, volume_name)) == "Bound"
    assert phase(pvc(cluster, "user")) == "Bound"


async def test_claim_goes_lost_when_its_volume_is_deleted(cluster: Cluster) -> None:
    create_claim(cluster, claim("orphan"))
    name = (await bound(cluster, "orphan"))["spec"]["volumeName"]
    pvs = cluster.kind("persistentvolumes")
    cluster.store.delete(pvs, None, name)
    # pv-protection holds a bound volume: it stays, Terminating, and its claim stays Bound.
    await asyncio.sleep(0.2)
    assert cluster.store.get(pvs, None, name)["metadata"]["deletionTimestamp"]
    assert phase(pvc(cluster, "orphan")) == "Bound"
    # An administrator forcing it away (dropping the finalizer) loses the claim's data.
    cluster.store.mutate(pvs, None, name, lambda o: o["metadata"].pop("finalizers"))
    await eventually(lambda: phase(pvc(cluster, "orphan")) == "Lost")
    assert events(cluster, "orphan", "ClaimLost")


async def test_pre_bound_claim_by_volume_name(cluster: Cluster, tmp_path: Path) -> None:
    pvs = cluster.kind("persistentvolumes")
    cluster.store.create(pvs, static_volume("wanted", tmp_path / "w", "2Gi", ""))
    cluster.store.create(pvs, static_volume("other", tmp_path / "o", "1Gi", ""))
    create_claim(cluster, claim("picky", storage_class="", volumeName="wanted"))
    assert (await bound(cluster, "picky"))["spec"]["volumeName"] == "wanted"


# -- storage profiles -------------------------------------------------------------------


async def test_storage_profiles_follow_the_classes(cluster: Cluster) -> None:
    profiles = cluster.registry.by_kind("cdi.kubevirt.io", "StorageProfile")
    assert profiles is not None

    def profile(name: str) -> Obj:
        found = cluster.store.find(profiles, None, name)
        return found.obj if found is not None else {}

    await eventually(lambda: "status" in profile("local-static"))
    assert profile("standard")["status"] == {
        "provisioner": HOSTPATH_PROVISIONER,
        "storageClass": "standard",
        "claimPropertySets": [
            {"accessModes": ["ReadWriteOnce"], "volumeMode": "Block"},
            {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"},
        ],
    }
    assert profile("local-static")["status"]["claimPropertySets"] == []
    wanted = [{"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"}]

    def override(obj: Obj) -> None:
        obj["spec"] = {"claimPropertySets": wanted}

    cluster.store.mutate(profiles, None, "local-static", override)
    await eventually(lambda: profile("local-static")["status"]["claimPropertySets"] == wanted)
    cluster.store.delete(cluster.kind("storageclasses", "storage.k8s.io"), None, "standard")
    await eventually(lambda: not profile("standard"))


# -- scheduler --------------------------------------------------------------------------


def pod(name: str, *claims: str, **spec: Any) -> Obj:
    body: Obj = {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox"}], **spec},
    }
    if claims:
        body["spec"]["volumes"] = [
            {"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}}
            for i, c in enumerate(claims)
        ]
    return body


def create_pod(cluster: Cluster, body: Obj) -> Obj:
    return cluster.store.create(cluster.kind("pods"), body, "default")


def node_of(cluster: Cluster, name: str) -> str | None:
    found = cluster.store.get(cluster.kind("pods"), "default", name)
    node: str | None = found["spec"].get("nodeName")
    return node


async def scheduled(cluster: Cluster, name: str) -> str:
    await eventually(lambda: node_of(cluster, name) is not None, what=f"{name} scheduled")
    node = node_of(cluster, name)
    assert node is not None
    return node


async def test_scheduler_spreads_pods_and_honours_selectors(cluster: Cluster) -> None:
    for index in range(4):
        create_pod(cluster, pod(f"spread-{index}"))
    nodes = [await scheduled(cluster, f"spread-{index}") for index in range(4)]
    assert sorted(nodes) == ["node-1", "node-1", "node-2", "node-2"]
    (event,) = events(cluster, "spread-0", "Scheduled")
    assert event["message"] == f"Successfully assigned default/spread-0 to {nodes[0]}"
    selector = {"kubernetes.io/hostname": "node-2"}
    create_pod(cluster, pod("picky", nodeSelector=selector))
    assert await scheduled(cluster, "picky") == "node-2"
    conditions = cluster.store.get(cluster.kind("pods"), "default", "picky")["status"]
    assert {"type": "PodScheduled", "status": "True"}.items() <= conditions["conditions"][0].items()


async def test_unschedulable_pod_gets_a_condition_and_an_event(cluster: Cluster) -> None:
    greedy = pod("greedy")
    greedy["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "64"}}
    create_pod(cluster, greedy)
    await eventually(lambda: has_event(cluster, "greedy", "FailedScheduling"))
    (event,) = events(cluster, "greedy", "FailedScheduling")
    assert event["message"] == (
        "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: "
        "2 No preemption victims found for incoming pod."
    )
    status = cluster.store.get(cluster.kind("pods"), "default", "greedy")["status"]
    (condition,) = status["conditions"]
    assert condition["reason"] == "Unschedulable"
    assert condition["status"] == "False"
    assert node_of(cluster, "greedy") is None


async def test_pod_with_a_missing_claim_waits_for_it(cluster: Cluster) -> None:
    create_pod(cluster, pod("needy", "later"))
    await eventually(lambda: has_event(cluster, "needy", "FailedScheduling"))
    message = events(cluster, "needy", "FailedScheduling")[0]["message"]
    assert 'persistentvolumeclaim "later" not found' in message
    create_claim(cluster, claim("later"))
    await scheduled(cluster, "needy")


async def test_wffc_claim_binds_on_the_node_the_pod_goes_to(cluster: Cluster) -> None:
    create_claim(cluster, claim("local-data", storage_class="standard-wffc"))
    create_pod(
        cluster, pod("consumer", "local-data", nodeSelector={"kubernetes.io/hostname": "node-2"})
    )
    assert await scheduled(cluster, "consumer") == "node-2"
    claimed = pvc(cluster, "local-data")
    assert claimed["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == "node-2"
    assert phase(claimed) == "Bound"
    assert pv(cluster, claimed["spec"]["volumeName"])["spec"]["nodeAffinity"] == on_node("node-2")
    # A second pod of the same claim follows the volume to its node.
    create_pod(cluster, pod("follower", "local-data"))
    assert await scheduled(cluster, "follower") == "node-2"


async def test_static_wffc_with_a_pinned_pod_never_binds(cluster: Cluster, tmp_path: Path) -> None:
    """populators.md: the populator pod pinned to a node bypasses the scheduler, so the
    prime claim never gets `selected-node` and never binds, though a volume is there."""
    pvs = cluster.kind("persistentvolumes")
    cluster.store.create(pvs, static_volume("disk", tmp_path / "d", nodeAffinity=on_node("node-1")))
    create_claim(cluster, claim("prime", storage_class="local-static"))
    create_pod(cluster, pod("populate", "prime", nodeName="node-1", restartPolicy="Never"))
    await eventually(lambda: has_event(cluster, "prime", "WaitForFirstConsumer"))
    create_claim(cluster, claim("control"))
    await bound(cluster, "control")  # the controllers are running and done
    assert phase(pvc(cluster, "prime")) == "Pending"
    assert "volume.kubernetes.io/selected-node" not in pvc(cluster, "prime")["metadata"].get(
        "annotations", {}
    )
    assert phase(pv(cluster, "disk")) == "Available"
    # The same pod left to the scheduler makes the claim bind to the static volume.
    create_claim(cluster, claim("prime-2", storage_class="local-static"))
    create_pod(cluster, pod("populate-2", "prime-2", restartPolicy="Never"))
    assert await scheduled(cluster, "populate-2") == "node-1"
    assert pvc(cluster, "prime-2")["spec"]["volumeName"] == "disk"


async def test_static_wffc_without_a_fitting_volume_is_unschedulable(
    cluster: Cluster, tmp_path: Path
) -> None:
    create_claim(cluster, claim("nowhere", storage_class="local-static"))
    create_pod(cluster, pod("stuck", "nowhere"))
    await eventually(lambda: has_event(cluster, "stuck", "FailedScheduling"))
    assert events(cluster, "stuck", "FailedScheduling")[0]["message"] == (
        "0/2 nodes are available: 2 node(s) didn't find available persistent volumes to bind. "
        "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    )
    # An administrator adds a volume on node-2: the pod goes there and the claim binds.
    pvs = cluster.kind("persistentvolumes")
    cluster.store.create(
        pvs, static_volume("added", tmp_path / "v", nodeAffinity=on_node("node-2"))
    )
    assert await scheduled(cluster, "stuck") == "node-2"
    assert pvc(cluster, "nowhere")["spec"]["volumeName"] == "added"


async def test_a_volume_pre_bound_to_a_wffc_claim_binds_without_a_consumer(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The real PV controller returns a volume pre-bound to the claim before it skips
    delayed binding: a populator hands a filled static volume to a WaitForFirstConsumer
    claim that way. A selector no volume matches keeps the claim from binding an Available
    one by itself (and its consumer unschedulable); a pre-bound volume ignores selectors."""
    pvs = cluster.kind("persistentvolumes")
    cluster.store.create(
        pvs, static_volume("empty", tmp_path / "e", nodeAffinity=on_node("node-1"))
    )
    hold = {"matchExpressions": [{"key": "hoist.io/hold", "operator": "Exists"}]}
    create_claim(cluster, claim("user", storage_class="local-static", selector=hold))
    create_pod(cluster, pod("consumer", "user"))
    await eventually(lambda: has_event(cluster, "consumer", "FailedScheduling"))
    assert phase(pvc(cluster, "user")) == "Pending"
    assert phase(pv(cluster, "empty")) == "Available"
    filled = static_volume("filled", tmp_path / "f", nodeAffinity=on_node("node-2"))
    filled["spec"]["claimRef"] = {"namespace": "default", "name": "user"}
    cluster.store.create(pvs, filled)
    assert (await bound(cluster, "user"))["spec"]["volumeName"] == "filled"
    assert await scheduled(cluster, "consumer") == "node-2"
    assert phase(pv(cluster, "empty")) == "Available"


async def test_scheduler_avoids_a_node_without_free_storage(make_cluster: Factory) -> None:
    cluster = await make_cluster(
        nodes=[NodeConfig("node-1", storage_capacity=1 << 30), NodeConfig("node-2")]
    )
    create_claim(cluster, claim("roomy", "2Gi", storage_class="standard-wffc"))
    create_pod(cluster, pod("needs-room", "roomy"))
    assert await scheduled(cluster, "needs-room") == "node-2"
    create_claim(cluster, claim("too-big", "2Gi", storage_class="standard-wffc"))
    create_pod(
        cluster, pod("no-room", "too-big", nodeSelector={"kubernetes.io/hostname": "node-1"})
    )
    await eventually(lambda: has_event(cluster, "no-room", "FailedScheduling"))
    assert events(cluster, "no-room", "FailedScheduling")[0]["message"] == (
        "0/2 nodes are available: 1 node(s) did not have enough free storage, "
        "1 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    )


async def test_a_claim_in_use_is_not_deleted_under_its_pod(cluster: Cluster) -> None:
    """pvc-protection: deleting a claim a running pod uses leaves it Terminating."""
    create_claim(cluster, claim("busy"))
    await bound(cluster, "busy")
    pods = cluster.kind("pods")
    claims = cluster.kind("persistentvolumeclaims")
    assert "kubernetes.io/pvc-protection" in pvc(cluster, "busy")["metadata"]["finalizers"]
    cluster.store.create(
        pods,
        {
            "metadata": {"name": "user"},
            "spec": {
                "nodeName": "node-1",
                "containers": [{"name": "c", "image": "nothing"}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "busy"}}],
            },
        },
        "default",
    )
    cluster.store.delete(claims, "default", "busy")
    await asyncio.sleep(0.2)
    assert pvc(cluster, "busy")["metadata"]["deletionTimestamp"]
    cluster.store.delete(pods, "default", "user", grace_period=0)
    await eventually(lambda: cluster.store.find(claims, "default", "busy") is None)
