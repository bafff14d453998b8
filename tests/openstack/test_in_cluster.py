"""The OpenStack populator as it runs in production: in a pod of the (simulated) cluster.

The pod spec is what a populator controller writes: Forklift's arguments, the copied Secret
as env (`envFrom`), the pod IP through the downward API, and the prime PVC mounted as a
Filesystem volume at `/mnt/disk` (the image lands in `disk.img`). The kubelet runs the real
program with the PV's directory bind-mounted there; the copy must be byte-exact, sparse,
and the program's metrics reachable through the API server's pod proxy.
"""

from __future__ import annotations

import asyncio
import base64
import re
import sys
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client import ApiException

from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from sim.openstack.cloud import Cloud
from tests.openstack.conftest import allocated

IMAGE = "quay.io/hoist/openstack-populator"


def secret(cloud: Cloud) -> dict[str, Any]:
    data = {k: base64.b64encode(v.encode()).decode() for k, v in cloud.credentials().items()}
    return {"metadata": {"name": "cloud"}, "data": data}


def populator_pod(cloud: Cloud, image_id: str, owner_uid: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"populate-{owner_uid}"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "populate",
                    "image": f"{IMAGE}:0.1.0",
                    "args": [
                        "--volume-path=/mnt/disk",
                        "--secret-name=cloud",
                        "--cr-name=img",
                        "--cr-namespace=default",
                        f"--owner-uid={owner_uid}",
                        "--pvc-size=64Mi",
                        f"--endpoint={cloud.auth_url}",
                        f"--image-id={image_id}",
                    ],
                    "envFrom": [{"secretRef": {"name": "cloud"}}],
                    "env": [
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
                    ],
                    "ports": [{"name": "metrics", "containerPort": 8443}],
                    "volumeMounts": [{"name": "target", "mountPath": "/mnt/disk"}],
                }
            ],
            "volumes": [{"name": "target", "persistentVolumeClaim": {"claimName": "prime"}}],
        },
    }


async def test_populator_pod_copies_into_a_filesystem_claim(
    cloud: Cloud,
    web_image: tuple[str, Path],
    tmp_path: Path,
) -> None:
    image_id, source = web_image
    images = {IMAGE: [sys.executable, "-m", "services.populators.openstack"]}
    async with Cluster(ClusterConfig(storage_root=tmp_path / "volumes", images=images)) as sim:
        configuration = client.Configuration()
        await config.load_kube_config_from_dict(
            sim.kubeconfig_dict(), client_configuration=configuration
        )
        async with client.ApiClient(configuration) as api:
            core = client.CoreV1Api(api)
            await core.create_namespaced_secret("default", secret(cloud))
            claim = await core.create_namespaced_persistent_volume_claim(
                "default",
                {
                    "metadata": {"name": "prime"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "volumeMode": "Filesystem",
                        "resources": {"requests": {"storage": "64Mi"}},
                    },
                },
            )
            uid = claim.metadata.uid
            await core.create_namespaced_pod("default", populator_pod(cloud, image_id, uid))
            name = f"populate-{uid}"
            scraped = await _finish(core, name, uid)
            pod = await core.read_namespaced_pod(name, "default")
            assert pod.status.phase == "Succeeded", pod.status
            log = await core.read_namespaced_pod_log(name, "default")
            assert log.rstrip().endswith("openstack-populator: done")
            assert cloud.credentials()["password"] not in log
            bound = await core.read_namespaced_persistent_volume_claim("prime", "default")
            volume = await core.read_persistent_volume(bound.spec.volume_name)
    target = Path((volume.spec.host_path or volume.spec.local).path) / "disk.img"
    assert target.read_bytes() == source.read_bytes()
    assert allocated(target) <= allocated(source)
    assert all(0 <= p <= 100 for p in scraped)


async def _finish(core: client.CoreV1Api, name: str, uid: str) -> list[int]:
    """Wait for the pod to end, scraping its /metrics through the proxy while it runs."""
    percents: list[int] = []
    for _ in range(1200):
        pod = await core.read_namespaced_pod(name, "default")
        if pod.status.phase in ("Succeeded", "Failed"):
            return percents
        if pod.status.phase == "Running":
            try:
                text = await core.connect_get_namespaced_pod_proxy_with_path(
                    f"https:{name}:8443", "default", "metrics"
                )
            except ApiException as error:
                if error.status != 503:  # not listening yet, or already gone
                    raise
            else:
                pattern = rf'^openstack_populator_progress{{ownerUID="{uid}"}} (\d+)'
                if match := re.search(pattern, text, re.M):
                    percents.append(int(match.group(1)))
        await asyncio.sleep(0.05)
    raise AssertionError(f"populator pod {name} never finished")
