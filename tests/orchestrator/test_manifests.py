"""The objects DiskAllocation creates: what they say, that the upstream schemas of
Kubernetes 1.28 to 1.31 accept them (strict: no unknown field), and that a simulated
cluster admits them and acts on them as a real one would (the consumer pod makes
WaitForFirstConsumer claims select a node; the garbage collector takes the copied Secret
once the last claim of its VM is gone).
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiException

from services.orchestrator import manifests, naming
from shared import conversion
from shared import populator as contract
from shared.payloads import PlannedVm, PlanStarted
from shared.sizing import GIB, MIB, claim_bytes
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from sim.kube.kinds import BUILTIN, Registry
from sim.kube.validation import Validator
from tests.conftest import eventually, kube_client
from tests.orchestrator import sample_plans
from tests.orchestrator.sample_plans import NAMESPACE

KUBE_VERSIONS = ("1.28", "1.29", "1.30", "1.31")
KINDS = Registry(BUILTIN)
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
IMAGE = "ghcr.io/hoist-io/hoist:0.1.0"
CLAIM_OWNER = {
    "apiVersion": "v1",
    "kind": "PersistentVolumeClaim",
    "metadata": {"name": "x", "uid": "0a4e5f6c-1111-4222-8333-444455556666"},
}


def built(started: PlanStarted) -> list[dict[str, Any]]:
    """Every object DiskAllocation makes for every VM of the plan."""
    out: list[dict[str, Any]] = []
    owner = manifests.owner_reference(CLAIM_OWNER)
    for vm in started.vms:
        for disk in vm.disks:
            out.append(manifests.claim(started, vm, disk))
            out.append(
                manifests.populator(
                    started, vm, disk, secret_name="s", owner=owner, image_id="img-1"
                )
            )
        out.append(manifests.source_secret(started, vm, {"user": "YWRtaW4="}, [owner]))
        out.append(
            manifests.consumer_pod(
                started, vm, [d.pvc_name for d in vm.disks], [owner], image=IMAGE
            )
        )
    return out


def kind_of(obj: dict[str, Any]) -> Any:
    api_version = obj["apiVersion"]
    group = api_version.rpartition("/")[0]
    return KINDS.by_kind(group, obj["kind"])


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_core_objects_pass_the_strict_upstream_schemas(version: str) -> None:
    validator = Validator(version, strict=True)
    checked = 0
    for started in sample_plans.all_plans():
        for obj in built(started):
            if obj["apiVersion"] == contract.API_VERSION:
                continue  # a custom resource: its CRD's schema is checked elsewhere
            kind = kind_of(obj)
            assert kind is not None
            assert validator.check(kind, obj) == [], (obj["kind"], obj["metadata"]["name"])
            checked += 1
    # Two oVirt plans (4 claims, 2 Secrets, 2 pods each) and one OpenStack (2, 1, 1).
    assert checked == 2 * (4 + 2 + 2) + (2 + 1 + 1)
    # The check has teeth: an unknown field is refused.
    pvc = built(sample_plans.openstack_plan())[0]
    pvc["spec"]["surprise"] = True
    assert validator.check(kind_of(pvc), pvc)


def test_every_label_is_a_valid_label_value() -> None:
    long_id = "x" * 80 + "/odd id"
    plan = sample_plans.openstack_plan()
    vm = plan.vms[0].model_copy(update={"vm_id": long_id})
    disk = vm.disks[0]
    assert disk.disk_id.endswith("-root")
    objs = [
        *built(sample_plans.ovirt_plan()),
        *built(plan),
        manifests.claim(plan, vm, disk),
        manifests.source_secret(plan, vm, {}, []),
    ]
    for obj in objs:
        for key, value in obj["metadata"]["labels"].items():
            assert len(value) <= 63, (key, value)
            assert LABEL_VALUE.match(value), (key, value)
    assert manifests.claim(plan, vm, disk)["metadata"]["labels"][contract.VM] == (
        contract.label_value(long_id)
    )


def test_claim_names_its_populator_and_carries_what_discovery_needs() -> None:
    started = sample_plans.ovirt_plan()
    vm = started.vms[0]
    disk = vm.disks[1]  # the Block boot disk
    pvc = manifests.claim(started, vm, disk)
    assert pvc["metadata"]["name"] == disk.pvc_name == "accounting-db-root"
    assert pvc["metadata"]["namespace"] == NAMESPACE
    assert pvc["metadata"]["labels"] == contract.object_labels(
        started.plan_id, started.migration_id, vm.vm_id, disk.disk_id
    )
    assert pvc["metadata"]["annotations"] == {
        contract.CLUSTER: "host",
        contract.TOTAL_BYTES: str(40 * GIB),
        contract.POPULATOR_KIND: contract.OVIRT.name,
    }
    assert pvc["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "volumeMode": "Block",
        "storageClassName": "standard",
        "resources": {"requests": {"storage": str(40 * GIB)}},
        "dataSourceRef": {
            "apiGroup": contract.GROUP,
            "kind": contract.OVIRT.name,
            "name": contract.populator_cr(disk.pvc_name),
        },
        "selector": contract.HOLD_SELECTOR,
    }
    os_plan = sample_plans.openstack_plan()
    os_pvc = manifests.claim(os_plan, os_plan.vms[0], os_plan.vms[0].disks[0])
    assert os_pvc["spec"]["dataSourceRef"]["kind"] == contract.OPENSTACK.name


@pytest.mark.parametrize(
    ("size", "mode", "expected"),
    [
        (40 * GIB, "Block", 40 * GIB),  # raw bytes, no overhead
        (GIB + 1, "Block", GIB + MIB),  # rounded up to whole MiB
        (GIB, "Filesystem", 1138 * MIB),  # 1 GiB / 0.9 = 1137.8 MiB, rounded up
        (10 * GIB + 1, "Filesystem", 11378 * MIB),
        (0, "Filesystem", 0),
    ],
)
def test_claim_size_counts_filesystem_overhead_in_whole_mib(
    size: int, mode: str, expected: int
) -> None:
    started = sample_plans.ovirt_plan()
    vm = started.vms[0]
    disk = vm.disks[0].model_copy(update={"size_bytes": size, "volume_mode": mode})
    request = manifests.claim(started, vm, disk)["spec"]["resources"]["requests"]["storage"]
    assert int(request) == expected == claim_bytes(size, mode)
    assert expected % MIB == 0
    if mode == "Filesystem" and size:
        assert expected * 0.9 >= size  # the file fits once the filesystem took its 10%


def test_populator_specs_use_forklifts_field_names() -> None:
    started = sample_plans.ovirt_plan()
    vm = started.vms[0]
    disk = vm.disks[0]
    owner = manifests.owner_reference(CLAIM_OWNER)
    cr = manifests.populator(started, vm, disk, secret_name="accounting-db-source", owner=owner)
    assert cr["apiVersion"] == "hoist.io/v1beta1"
    assert cr["kind"] == contract.OVIRT.name
    assert cr["metadata"]["name"] == disk.pvc_name
    assert cr["metadata"]["ownerReferences"] == [owner]
    assert cr["metadata"]["labels"][contract.DISK] == disk.disk_id
    assert cr["spec"] == {
        "engineUrl": "https://engine.example.com/ovirt-engine/api",
        "engineSecretName": "accounting-db-source",
        "diskId": disk.disk_id,
        "transferNetwork": "vms/transfer",
    }
    plain = sample_plans.ovirt_plan(transfer_network=None)
    assert (
        "transferNetwork"
        not in manifests.populator(
            plain, plain.vms[0], plain.vms[0].disks[0], secret_name="s", owner=owner
        )["spec"]
    )

    os_plan = sample_plans.openstack_plan()
    os_vm = os_plan.vms[0]
    os_cr = manifests.populator(
        os_plan, os_vm, os_vm.disks[0], secret_name="web-1-source", owner=owner, image_id="i-1"
    )
    assert os_cr["kind"] == contract.OPENSTACK.name
    assert os_cr["spec"] == {
        "identityUrl": "https://keystone.example.com:5000/v3",
        "secretName": "web-1-source",
        "imageId": "i-1",
    }
    with pytest.raises(ValueError, match="conversion step"):
        manifests.populator(os_plan, os_vm, os_vm.disks[0], secret_name="s", owner=owner)


def test_owner_reference_from_an_object_as_read() -> None:
    assert manifests.owner_reference(CLAIM_OWNER) == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "name": "x",
        "uid": "0a4e5f6c-1111-4222-8333-444455556666",
        "controller": False,
        "blockOwnerDeletion": True,
    }
    ref = manifests.owner_reference(CLAIM_OWNER, controller=True, block=False)
    assert ref["controller"] is True
    assert ref["blockOwnerDeletion"] is False
    listed = {k: v for k, v in CLAIM_OWNER.items() if k != "kind"}  # a list item
    with pytest.raises(ValueError, match="kind"):
        manifests.owner_reference(listed)


def test_source_secret_is_one_per_vm_owned_by_all_its_claims() -> None:
    started = sample_plans.ovirt_plan()
    vm = started.vms[0]
    owners = [
        manifests.owner_reference(
            {**CLAIM_OWNER, "metadata": {"name": d.pvc_name, "uid": f"uid-{i}"}}
        )
        for i, d in enumerate(vm.disks)
    ]
    copied = manifests.source_secret(started, vm, {"user": "YWRtaW4="}, owners)
    assert copied["metadata"]["name"] == naming.source_secret(vm.target_name, started.migration_id)
    assert (
        copied["metadata"]["name"]
        != manifests.source_secret(started, started.vms[1], {}, owners)["metadata"]["name"]
    )
    assert copied["type"] == "Opaque"
    assert copied["data"] == {"user": "YWRtaW4="}
    assert "stringData" not in copied
    assert copied["metadata"]["ownerReferences"] == owners
    assert copied["metadata"]["labels"][naming.SECRET_LABEL] == naming.SECRET_KIND
    assert contract.DISK not in copied["metadata"]["labels"]
    assert copied["metadata"]["annotations"][manifests.COPIED_FROM] == "hoist/engine-credentials"
    plain = manifests.source_secret(started, vm, {"password": "pä ss"}, owners, encoded=False)
    assert base64.b64decode(plain["data"]["password"]).decode() == "pä ss"


def test_consumer_pod_uses_every_claim_the_way_its_mode_needs() -> None:
    started = sample_plans.ovirt_plan()
    vm = started.vms[0]
    names = [d.pvc_name for d in vm.disks]
    pod = manifests.consumer_pod(
        started, vm, names, [], image=IMAGE, command=["/bin/true"], run_as_user=1001
    )
    assert pod["metadata"]["name"] == naming.consumer_pod(vm.target_name, started.migration_id)
    assert pod["metadata"]["labels"][naming.CONSUMER_LABEL] == manifests.CONSUMER_VALUE
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert "nodeName" not in spec  # the scheduler must place it, or no node gets selected
    assert [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]] == names
    (container,) = spec["containers"]
    assert container["command"] == ["/bin/true"]
    by_volume = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]}
    mounted = {by_volume[m["name"]] for m in container["volumeMounts"]}
    attached = {by_volume[m["name"]] for m in container["volumeDevices"]}
    assert mounted == {"accounting-db-data"}
    assert attached == {"accounting-db-root", "accounting-db-logs"}
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 1001
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["limits"]["memory"] == "128Mi"

    filesystem_only = manifests.consumer_pod(started, vm, ["accounting-db-data"], [], image=IMAGE)
    assert "volumeDevices" not in filesystem_only["spec"]["containers"][0]
    # By default the image's own entrypoint runs, told to exit at once.
    assert "command" not in filesystem_only["spec"]["containers"][0]
    assert filesystem_only["spec"]["containers"][0]["args"] == ["pvcinit"]
    with pytest.raises(ValueError, match="not disks of VM"):
        manifests.consumer_pod(started, vm, ["legacy-disk"], [], image=IMAGE)
    with pytest.raises(ValueError, match="at least one claim"):
        manifests.consumer_pod(started, vm, [], [], image=IMAGE)


def test_builders_are_deterministic() -> None:
    assert built(sample_plans.ovirt_plan()) == built(sample_plans.ovirt_plan())
    assert built(sample_plans.openstack_plan()) == built(sample_plans.openstack_plan())


# --- in a simulated cluster ----------------------------------------------------------------


@pytest.fixture(params=["1.28", "1.31"])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    config = ClusterConfig(
        storage_root=tmp_path / "volumes",
        bookmark_seconds=0.2,
        kube_version=request.param,
        disabled=frozenset({"kubelet"}),  # the pods never need to run here
    )
    sim = Cluster(config)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[client.ApiClient]:
    async with kube_client(cluster) as api_client:
        await client.CoreV1Api(api_client).create_namespace({"metadata": {"name": NAMESPACE}})
        yield api_client


async def create_claims(
    api: client.ApiClient, started: PlanStarted, vm: PlannedVm
) -> list[dict[str, Any]]:
    core = client.CoreV1Api(api)
    out = []
    for disk in vm.disks:
        made = await core.create_namespaced_persistent_volume_claim(
            NAMESPACE, manifests.claim(started, vm, disk)
        )
        out.append(api.sanitize_for_serialization(made))
    return out


async def test_the_cluster_admits_them_and_the_consumer_selects_one_node(
    api: client.ApiClient,
) -> None:
    core = client.CoreV1Api(api)
    started = sample_plans.ovirt_plan()
    vm = started.vms[0].model_copy(
        update={
            "disks": [
                d.model_copy(update={"storage_class": "standard-wffc"})
                for d in started.vms[0].disks
            ]
        }
    )
    claims = await create_claims(api, started, vm)
    assert claims[0]["spec"]["dataSourceRef"]["kind"] == contract.OVIRT.name
    owners = [manifests.owner_reference(c) for c in claims]
    secret = await core.create_namespaced_secret(
        NAMESPACE, manifests.source_secret(started, vm, {"password": "c2VjcmV0"}, owners)
    )
    assert secret.data == {"password": "c2VjcmV0"}
    pod_body = manifests.consumer_pod(
        started, vm, [c["metadata"]["name"] for c in claims], owners, image=IMAGE
    )
    await core.create_namespaced_pod(NAMESPACE, pod_body)

    async def one_node_selected() -> bool:
        nodes = set()
        for c in claims:
            read = await core.read_namespaced_persistent_volume_claim(
                c["metadata"]["name"], NAMESPACE
            )
            nodes.add((read.metadata.annotations or {}).get(contract.SELECTED_NODE))
        return len(nodes) == 1 and None not in nodes

    await eventually(one_node_selected, what="the consumer pod selecting a node for all claims")
    # The claims stay unbound (no populator runs here) and the pod Pending on them.
    pod = await core.read_namespaced_pod(pod_body["metadata"]["name"], NAMESPACE)
    assert pod.status.phase == "Pending"

    # The pipeline deletes the consumer itself: a claim a pod may still use is not deleted.
    await core.delete_namespaced_pod(pod_body["metadata"]["name"], NAMESPACE)
    name = secret.metadata.name
    await core.delete_namespaced_persistent_volume_claim(claims[0]["metadata"]["name"], NAMESPACE)
    await eventually(
        lambda: _gone(core.read_namespaced_persistent_volume_claim, claims[0]), what="claim gone"
    )
    assert (await core.read_namespaced_secret(name, NAMESPACE)).metadata.name == name
    for c in claims[1:]:
        await core.delete_namespaced_persistent_volume_claim(c["metadata"]["name"], NAMESPACE)
    await eventually(
        lambda: _gone(core.read_namespaced_secret, {"metadata": {"name": name}}),
        what="the collector deleting the copied Secret once every claim of its VM is gone",
    )


async def test_the_cluster_admits_the_objects_of_every_plan(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    for started in sample_plans.all_plans():
        for vm in started.vms:
            if started.transfer_network is None and started.source.type.value == "ovirt":
                continue  # the same names as the first oVirt plan
            claims = await create_claims(api, started, vm)
            owners = [manifests.owner_reference(c) for c in claims]
            await core.create_namespaced_secret(
                NAMESPACE, manifests.source_secret(started, vm, {"a": "b"}, owners, encoded=False)
            )
            await core.create_namespaced_pod(
                NAMESPACE,
                manifests.consumer_pod(
                    started, vm, [d.pvc_name for d in vm.disks], owners, image=IMAGE
                ),
            )
    listed = await core.list_namespaced_persistent_volume_claim(
        NAMESPACE, label_selector=f"{contract.MANAGED_BY}={contract.MANAGED_BY_HOIST}"
    )
    assert len(listed.items) == 3 + 1 + 2
    pods = await core.list_namespaced_pod(NAMESPACE, label_selector=naming.CONSUMER_LABEL)
    assert len(pods.items) == 3


async def _gone(read: Any, obj: dict[str, Any]) -> bool:
    try:
        await read(obj["metadata"]["name"], NAMESPACE)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def test_conversion_pod_attaches_every_claim_in_disk_order() -> None:
    started = sample_plans.all_plans()[0]
    vm = started.vms[0]
    modes = [d.volume_mode for d in vm.disks]
    args = manifests.convert_args(vm, accel="tcg", overlay=True)
    assert [m.value for m in args.disks] == modes
    pod = manifests.conversion_pod(
        started, vm, args, [manifests.owner_reference(CLAIM_OWNER)], image=IMAGE
    )
    assert pod == manifests.conversion_pod(
        started, vm, args, [manifests.owner_reference(CLAIM_OWNER)], image=IMAGE
    )
    assert pod["metadata"]["name"] == naming.conversion_pod(vm.target_name, started.migration_id)
    assert pod["metadata"]["labels"][conversion.CONVERSION] == conversion.CONVERSION_VALUE
    (container,) = pod["spec"]["containers"]
    assert conversion.ConvertArgs.parse(container["args"]) == args
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    paths = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    paths |= {d["name"]: d["devicePath"] for d in container.get("volumeDevices") or []}
    for i, disk in enumerate(vm.disks):
        assert claims[f"disk{i}"] == disk.pvc_name
        assert paths[f"disk{i}"] == conversion.volume_path(i, disk.volume_mode)
    assert paths["scratch"] == conversion.SCRATCH
    for version in KUBE_VERSIONS:
        assert Validator(version, strict=True).check(kind_of(pod), pod) == []
