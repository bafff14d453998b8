"""What the controller writes, without a cluster: the registered manifests, the prime
claim and pod of a claim, the status log tail, and the work queue's guarantees."""

from __future__ import annotations

import asyncio

from services.controller import manifests as pod_manifests
from services.controller.queue import WorkQueue
from shared import populator as contract
from shared.populator import crds, digest, manifests
from shared.settings import OrchestratorSettings


def user_claim(mode: str = "Filesystem", **annotations: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": "vm-1-disk-0",
            "namespace": "target",
            "uid": "0f0e-uid",
            "resourceVersion": "7",
            "labels": contract.object_labels("plan-1", "mig-1", "vm-1", "disk-0"),
            "annotations": {
                contract.CLUSTER: "kv-1",
                contract.TOTAL_BYTES: "1048576",
                contract.POPULATOR_KIND: "openstack",
                **annotations,
            },
        },
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "volumeMode": mode,
            "storageClassName": "fast",
            "resources": {"requests": {"storage": "2Gi"}},
            "dataSourceRef": {
                "apiGroup": contract.GROUP,
                "kind": contract.OPENSTACK.name,
                "name": "vm-1-disk-0",
            },
        },
    }


POPULATOR = {
    "kind": contract.OPENSTACK.name,
    "metadata": {"name": "vm-1-disk-0", "namespace": "target"},
    "spec": {
        "identityUrl": "https://keystone:5000/v3",
        "secretName": "vm-1-source",
        "imageId": "img-1",
        "transferNetwork": "storage-net",
    },
}


def test_manifests_register_both_kinds_with_required_fields() -> None:
    names = [m["metadata"]["name"] for m in manifests()]
    assert names == [
        "ovirtvolumepopulators.hoist.io",
        "openstackvolumepopulators.hoist.io",
        "hoist-ovirt",
        "hoist-openstack",
    ]
    required = {
        c["spec"]["names"]["kind"]: c["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
            "properties"
        ]["spec"]["required"]
        for c in crds()
    }
    assert required == {
        contract.OVIRT.name: ["engineUrl", "engineSecretName", "diskId"],
        contract.OPENSTACK.name: ["identityUrl", "secretName", "imageId"],
    }
    assert digest(manifests()[0]) == digest(manifests()[0])  # stable across calls


def test_pod_of_a_filesystem_claim() -> None:
    settings = OrchestratorSettings(populator_image="registry/hoist:1.2", populator_uid=2000)
    pod = pod_manifests.populator_pod(user_claim(), POPULATOR, settings, node=None)
    meta, spec = pod["metadata"], pod["spec"]
    assert contract.missing(meta["labels"], meta["annotations"]) == []
    assert meta["annotations"][contract.MULTUS_NETWORKS] == "target/storage-net"
    assert meta["annotations"][contract.TOTAL_BYTES] == "1048576"
    container = spec["containers"][0]
    assert container["image"] == "registry/hoist:1.2"
    assert container["args"] == [
        "openstack",
        "--volume-path=/mnt/disk",
        "--secret-name=vm-1-source",
        "--cr-name=vm-1-disk-0",
        "--cr-namespace=target",
        "--owner-uid=0f0e-uid",
        "--pvc-size=2Gi",
        "--endpoint=https://keystone:5000/v3",
        "--image-id=img-1",
    ]
    assert "volumeDevices" not in container
    assert {"name": "target", "mountPath": "/mnt/disk"} in container["volumeMounts"]
    assert container["envFrom"] == [{"secretRef": {"name": "vm-1-source"}}]
    assert spec["securityContext"]["runAsUser"] == 2000
    assert spec["securityContext"]["fsGroup"] == 2000
    assert "nodeName" not in spec
    ca = next(v for v in spec["volumes"] if v["name"] == "ca")
    assert ca["secret"]["items"] == [{"key": "cacert", "path": "ca.crt"}]
    assert ca["secret"]["optional"] is True


def test_prime_claim_copies_the_claim_and_pins_the_node() -> None:
    prime = pod_manifests.prime_claim(user_claim("Block"), node="node-2")
    assert prime["metadata"]["name"] == "prime-0f0e-uid"
    assert prime["metadata"]["annotations"] == {contract.SELECTED_NODE: "node-2"}
    assert prime["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "2Gi"}},
        "storageClassName": "fast",
        "volumeMode": "Block",
    }
    owner = prime["metadata"]["ownerReferences"][0]
    assert owner["uid"] == "0f0e-uid"
    assert owner["controller"] is True


def test_status_log_keeps_the_end_within_16_kib() -> None:
    text = "".join(f"line {n}\n" for n in range(10_000))
    kept = contract.tail(text)
    assert len(kept.encode()) <= 16 * 1024
    assert kept.endswith("line 9999\n")
    assert kept.startswith("line ")


async def test_queue_hands_a_key_to_one_worker_at_a_time() -> None:
    queue = WorkQueue()
    key = ("ns", "claim")
    queue.add(key)
    queue.add(key)
    assert len(queue) == 1
    got = await queue.get()
    queue.add(key)  # changed while being handled: handled again afterwards, not now
    second = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0.01)
    assert not second.done()
    queue.done(got)
    assert await asyncio.wait_for(second, 1) == key
    queue.done(key)
    queue.add_after(key, 0.05)
    queue.add_after(key, 10)  # a later wake-up does not replace the earlier one
    assert await asyncio.wait_for(queue.get(), 1) == key
