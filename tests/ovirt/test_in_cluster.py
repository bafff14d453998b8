"""The oVirt populator as it runs in production: in a pod of the (simulated) cluster.

The pod spec is what a populator controller writes: Forklift's arguments, the copied
Secret as env (`envFrom`), the pod IP through the downward API, and the prime PVC as a
block device at `/dev/block`. The kubelet runs the real program with the PV's backing file
bind-mounted there; the copy must be byte-exact and its metrics reachable through the API
server's pod proxy while it runs.
"""

from __future__ import annotations

import asyncio
import base64
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client import ApiException

from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from sim.ovirt.engine import Engine
from sim.ovirt.scenario import Fault
from tests.ovirt.conftest import MiB, assert_same_image, new_disk, transfer_phase

IMAGE = "quay.io/hoist/ovirt-populator"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def populator_pod(engine: Engine, disk_id: str, claim: str, owner_uid: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"populate-{owner_uid}", "labels": {"hoist.io/disk": disk_id}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "populate",
                    "image": f"{IMAGE}:0.1.0",
                    "args": [
                        "--volume-path=/dev/block",
                        "--secret-name=engine",
                        "--cr-name=disk-cr",
                        "--cr-namespace=default",
                        f"--owner-uid={owner_uid}",
                        "--pvc-size=64Mi",
                        f"--engine-url={engine.api_url}",
                        f"--disk-id={disk_id}",
                    ],
                    "envFrom": [{"secretRef": {"name": "engine"}}],
                    "env": [
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
                    ],
                    "ports": [{"name": "metrics", "containerPort": 8443}],
                    "volumeDevices": [{"name": "target", "devicePath": "/dev/block"}],
                }
            ],
            "volumes": [{"name": "target", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }


async def test_populator_pod_copies_into_a_block_claim(engine: Engine, tmp_path: Path) -> None:
    disk = new_disk(engine, size="48MiB", allocated=0.5, extent="1MiB", layout="scattered")
    # Slow enough that the test can watch progress through the API server's proxy.
    engine.add_fault(Fault("bandwidth", disk=disk.id, bytes_per_second=12 * MiB))
    images = {IMAGE: [sys.executable, "-m", "services.populators.ovirt"]}
    async with Cluster(ClusterConfig(storage_root=tmp_path / "volumes", images=images)) as sim:
        configuration = client.Configuration()
        await config.load_kube_config_from_dict(
            sim.kubeconfig_dict(), client_configuration=configuration
        )
        async with client.ApiClient(configuration) as api:
            core = client.CoreV1Api(api)
            await core.create_namespaced_secret(
                "default",
                {
                    "metadata": {"name": "engine"},
                    "data": {
                        "user": b64("admin@internal"),
                        "password": b64("secret"),
                        "cacert": b64(engine.cert.ca_pem),
                    },
                },
            )
            claim = await core.create_namespaced_persistent_volume_claim(
                "default",
                {
                    "metadata": {"name": "prime"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "volumeMode": "Block",
                        "resources": {"requests": {"storage": "64Mi"}},
                    },
                },
            )
            uid = claim.metadata.uid
            await core.create_namespaced_pod(
                "default", populator_pod(engine, disk.id, "prime", uid)
            )
            name = f"populate-{uid}"
            percents = await _scrape_until_done(core, name, uid)
            pod = await core.read_namespaced_pod(name, "default")
            assert pod.status.phase == "Succeeded", pod.status
            assert pod.status.container_statuses[0].state.terminated.exit_code == 0
            log = await core.read_namespaced_pod_log(name, "default")
            assert "ovirt-populator: done" in log
            assert engine.cert.ca_pem.splitlines()[1] not in log  # the Secret stays out
            bound = await core.read_namespaced_persistent_volume_claim("prime", "default")
            volume = await core.read_persistent_volume(bound.spec.volume_name)
    backing = Path((volume.spec.host_path or volume.spec.local).path)
    await assert_same_image(engine, disk, backing)
    assert await transfer_phase(engine, disk) == "finished_success"
    assert percents
    assert percents == sorted(percents)


async def _scrape_until_done(core: client.CoreV1Api, name: str, uid: str) -> list[int]:
    """Progress as the progress service reads it: the pod's /metrics through the proxy."""
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
                if error.status != 503:  # not listening yet
                    raise
            else:
                match = re.search(rf'^ovirt_progress{{ownerUID="{uid}"}} (\d+)', text, re.M)
                assert match, text
                percents.append(int(match.group(1)))
        await asyncio.sleep(0.1)
    pytest.fail(f"populator pod {name} never finished")
