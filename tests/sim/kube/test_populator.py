"""A hand-written volume populator runs to completion through the simulator's controllers.

The populator follows ../shared/reference/populators.md step by step, through the real
kubernetes_asyncio client: it waits for the CR, the StorageClass and (under
WaitForFirstConsumer) the selected node; creates the prime PVC and the populator pod
owned by the user's PVC; when the pod succeeds, rebinds the prime's PV to the user's claim;
once the binder has bound the user's claim and marked the prime Lost (ClaimMisbound), it
deletes the prime and the pod and drops its finalizer. The data the pod wrote must then be
what the user's claim holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiException

from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig

NS = "default"
GROUP = "test.hoist.io"
FINALIZER = f"{GROUP}/populate-target-protection"
SIZE = 4 * 1024 * 1024
WRITER = (
    "import os, sys\n"
    "path = sys.argv[1]\n"
    "block = bytes(range(256)) * 4096\n"
    "fd = os.open(path, os.O_WRONLY | os.O_CREAT)\n"
    "for offset in range(0, int(sys.argv[2]), 2 * len(block)):\n"
    "    os.pwrite(fd, block, offset)\n"
    "if not path.startswith('/dev/'):\n"
    "    os.ftruncate(fd, int(sys.argv[2]))\n"
    "os.fsync(fd)\n"
    "print('wrote', path)\n"
)

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"samplepopulators.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"kind": "SamplePopulator", "plural": "samplepopulators"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}
                        },
                    }
                },
            }
        ],
    },
}


def expected_digest(size: int) -> str:
    block = bytes(range(256)) * 4096
    data = bytearray(size)
    for offset in range(0, size, 2 * len(block)):
        data[offset : offset + len(block)] = block[: max(0, min(len(block), size - offset))]
    return hashlib.sha256(bytes(data)).hexdigest()


@pytest.fixture
def cluster_config(tmp_path: Path) -> ClusterConfig:
    return ClusterConfig(storage_root=tmp_path / "volumes", images={"writer": [sys.executable]})


class SamplePopulator:
    """The populator controller, as small as the mechanism allows."""

    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.storage = client.StorageV1Api(api)

    async def run(self) -> None:
        while True:
            claims = await self.core.list_namespaced_persistent_volume_claim(NS)
            for pvc in claims.items:
                ref = pvc.spec.data_source_ref
                if ref is not None and ref.kind == "SamplePopulator" and ref.api_group == GROUP:
                    await self.reconcile(pvc)
            await asyncio.sleep(0.05)

    async def reconcile(self, pvc: Any) -> None:
        uid = pvc.metadata.uid
        prime_name, pod_name = f"prime-{uid}", f"populate-{uid}"
        if pvc.metadata.deletion_timestamp is None and pvc.status.phase == "Bound":
            await self.cleanup(pvc, prime_name, pod_name)
            return
        try:
            cr = await self.custom.get_namespaced_custom_object(
                GROUP, "v1", NS, "samplepopulators", pvc.spec.data_source_ref.name
            )
        except ApiException:
            return  # the CR is not there yet: wait
        storage_class = await self.storage.read_storage_class(pvc.spec.storage_class_name)
        node = (pvc.metadata.annotations or {}).get("volume.kubernetes.io/selected-node")
        if storage_class.volume_binding_mode == "WaitForFirstConsumer" and not node:
            return  # nothing consumes the claim yet
        if FINALIZER not in (pvc.metadata.finalizers or []):
            await self.core.patch_namespaced_persistent_volume_claim(
                pvc.metadata.name, NS, {"metadata": {"finalizers": [FINALIZER]}}
            )
        owner = [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "name": pvc.metadata.name,
                "uid": uid,
                "blockOwnerDeletion": True,
                "controller": True,
            }
        ]
        block = pvc.spec.volume_mode == "Block"
        await self.create(
            self.core.create_namespaced_persistent_volume_claim,
            {
                "metadata": {
                    "name": prime_name,
                    "ownerReferences": owner,
                    "annotations": {"volume.kubernetes.io/selected-node": node} if node else {},
                },
                "spec": {
                    "accessModes": pvc.spec.access_modes,
                    "resources": {"requests": pvc.spec.resources.requests},
                    "storageClassName": pvc.spec.storage_class_name,
                    "volumeMode": pvc.spec.volume_mode,
                },
            },
        )
        target = "/dev/block" if block else "/mnt/disk.img"
        container: dict[str, Any] = {
            "name": "populate",
            "image": "writer",
            "args": ["-c", WRITER, target, str(cr["spec"]["size"])],
        }
        if block:
            container["volumeDevices"] = [{"name": "target", "devicePath": "/dev/block"}]
        else:
            container["volumeMounts"] = [{"name": "target", "mountPath": "/mnt"}]
        pod_spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "containers": [container],
            "volumes": [{"name": "target", "persistentVolumeClaim": {"claimName": prime_name}}],
        }
        if node:
            pod_spec["nodeName"] = node
        await self.create(
            self.core.create_namespaced_pod,
            {"metadata": {"name": pod_name, "ownerReferences": owner}, "spec": pod_spec},
        )
        populator = await self.core.read_namespaced_pod(pod_name, NS)
        if populator.status.phase != "Succeeded":
            return
        prime = await self.core.read_namespaced_persistent_volume_claim(prime_name, NS)
        if not prime.spec.volume_name:
            return
        volume = await self.core.read_persistent_volume(prime.spec.volume_name)
        if volume.spec.claim_ref.uid != uid:
            await self.core.patch_persistent_volume(
                prime.spec.volume_name,
                {
                    "metadata": {
                        "annotations": {f"{GROUP}/populated-from": f"{NS}/{cr['metadata']['name']}"}
                    },
                    "spec": {
                        "claimRef": {
                            "namespace": NS,
                            "name": pvc.metadata.name,
                            "uid": uid,
                            "resourceVersion": pvc.metadata.resource_version,
                        }
                    },
                },
            )

    async def cleanup(self, pvc: Any, prime_name: str, pod_name: str) -> None:
        try:
            prime = await self.core.read_namespaced_persistent_volume_claim(prime_name, NS)
        except ApiException:
            prime = None
        if prime is not None:
            if prime.status.phase != "Lost":
                return  # the binder has not caught up yet
            await self.core.delete_namespaced_persistent_volume_claim(prime_name, NS)
        with contextlib.suppress(ApiException):
            await self.core.delete_namespaced_pod(pod_name, NS)
        if FINALIZER in (pvc.metadata.finalizers or []):
            await self.core.patch_namespaced_persistent_volume_claim(
                pvc.metadata.name,
                NS,
                [
                    {
                        "op": "test",
                        "path": "/metadata/resourceVersion",
                        "value": pvc.metadata.resource_version,
                    },
                    {
                        "op": "replace",
                        "path": "/metadata/finalizers",
                        "value": [f for f in pvc.metadata.finalizers if f != FINALIZER],
                    },
                ],
            )

    @staticmethod
    async def create(method: Any, body: dict[str, Any]) -> None:
        try:
            await method(NS, body)
        except ApiException as error:
            if error.status != 409:
                raise


async def until(check: Any, timeout: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.05)


def backing(volume: Any) -> Path:
    source = volume.spec.host_path or volume.spec.local
    return Path(source.path)


@pytest.mark.parametrize(
    ("mode", "storage_class"),
    [("Filesystem", "standard"), ("Block", "standard"), ("Block", "standard-wffc")],
)
async def test_sample_populator_fills_the_users_claim(
    cluster: Cluster, api: client.ApiClient, mode: str, storage_class: str
) -> None:
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    await client.ApiextensionsV1Api(api).create_custom_resource_definition(CRD)
    await custom.create_cluster_custom_object(
        "populator.storage.k8s.io",
        "v1beta1",
        "volumepopulators",
        {
            "apiVersion": "populator.storage.k8s.io/v1beta1",
            "kind": "VolumePopulator",
            "metadata": {"name": "sample"},
            "sourceKind": {"group": GROUP, "kind": "SamplePopulator"},
        },
    )
    controller = asyncio.create_task(SamplePopulator(api).run())
    try:
        # The claim first, its CR later: the populator must wait, not fail.
        await core.create_namespaced_persistent_volume_claim(
            NS,
            {
                "metadata": {"name": "disk"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "volumeMode": mode,
                    "storageClassName": storage_class,
                    "resources": {"requests": {"storage": "8Mi"}},
                    "dataSourceRef": {
                        "apiGroup": GROUP,
                        "kind": "SamplePopulator",
                        "name": "source",
                    },
                },
            },
        )
        await asyncio.sleep(0.3)
        assert (
            await core.read_namespaced_persistent_volume_claim("disk", NS)
        ).status.phase == "Pending"
        await custom.create_namespaced_custom_object(
            GROUP,
            "v1",
            NS,
            "samplepopulators",
            {
                "apiVersion": f"{GROUP}/v1",
                "kind": "SamplePopulator",
                "metadata": {"name": "source"},
                "spec": {"size": SIZE},
            },
        )
        if storage_class == "standard-wffc":
            # Forklift's pvcinit: a consumer, so the scheduler picks a node for the claim.
            await core.create_namespaced_pod(
                NS,
                {
                    "metadata": {"name": "consumer"},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {
                                "name": "c",
                                "image": "writer",
                                "args": ["-c", "pass"],
                                "volumeDevices": [{"name": "d", "devicePath": "/dev/disk"}],
                            }
                        ],
                        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "disk"}}],
                    },
                },
            )

        async def populated() -> Any:
            pvc = await core.read_namespaced_persistent_volume_claim("disk", NS)
            done = pvc.status.phase == "Bound" and FINALIZER not in (pvc.metadata.finalizers or [])
            return pvc if done else None

        pvc = await until(populated)
    finally:
        controller.cancel()
    volume = await core.read_persistent_volume(pvc.spec.volume_name)
    assert volume.spec.claim_ref.uid == pvc.metadata.uid
    assert volume.metadata.annotations[f"{GROUP}/populated-from"] == f"{NS}/source"
    image = backing(volume) if mode == "Block" else backing(volume) / "disk.img"
    assert hashlib.sha256(image.read_bytes()[:SIZE]).hexdigest() == expected_digest(SIZE)

    async def cleaned() -> bool:
        names = {
            p.metadata.name for p in (await core.list_namespaced_persistent_volume_claim(NS)).items
        }
        pods = {p.metadata.name for p in (await core.list_namespaced_pod(NS)).items}
        return names == {"disk"} and not any(p.startswith("populate-") for p in pods)

    await until(cleaned)
    events = await core.list_namespaced_event(NS, field_selector="reason=ClaimMisbound")
    assert [e.involved_object.name for e in events.items] == [f"prime-{pvc.metadata.uid}"]
