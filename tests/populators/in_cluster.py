"""Running a real populator program in a pod of the simulated cluster, as production does.

The pod spec is what a populator controller writes: Forklift's arguments, the copied Secret
as env (`envFrom`), the pod IP through the downward API (the metrics server binds it), the
prime PVC as a block device at `/dev/block` or a mount at `/mnt/disk`. While the pod runs,
its `/metrics` is scraped the way the progress service does: through the API server's pod
proxy.
"""

from __future__ import annotations

import asyncio
import base64
import re
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiException

from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from tests.conftest import kube_client

NS = "default"


@dataclass
class PopulatorRun:
    phase: str
    exit_code: int | None
    log: str
    #: The PV's backing file (Block) or `disk.img` in its directory (Filesystem).
    target: Path
    #: The progress percentages scraped through the proxy while the pod ran.
    percents: list[int]


@asynccontextmanager
async def cluster_for(tmp_path: Path, image: str, module: str) -> AsyncIterator[Any]:
    """A cluster whose `image` runs `python -m module`, and a CoreV1Api on it."""
    images = {image: [sys.executable, "-m", module]}
    config = ClusterConfig(storage_root=tmp_path / "volumes", images=images)
    async with Cluster(config) as sim, kube_client(sim) as api:
        yield client.CoreV1Api(api)


async def run_populator(
    core: Any,
    image: str,
    source_args: list[str],
    credentials: dict[str, str],
    *,
    block: bool,
    size: str,
    metric: str,
    metadata: Callable[[str], dict[str, Any]] | None = None,
) -> PopulatorRun:
    """Create the Secret, the prime claim and the populator pod; wait for the pod to end.

    ``metadata(owner_uid)`` adds labels and annotations to the pod (Hoist's, for discovery)."""
    await core.create_namespaced_secret(
        NS,
        {
            "metadata": {"name": "source"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in credentials.items()},
        },
    )
    claim = await core.create_namespaced_persistent_volume_claim(
        NS,
        {
            "metadata": {"name": "prime"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "volumeMode": "Block" if block else "Filesystem",
                "resources": {"requests": {"storage": size}},
            },
        },
    )
    uid = claim.metadata.uid
    name = f"populate-{uid}"
    path = "/dev/block" if block else "/mnt/disk"
    attach = (
        {"volumeDevices": [{"name": "target", "devicePath": path}]}
        if block
        else {"volumeMounts": [{"name": "target", "mountPath": path}]}
    )
    await core.create_namespaced_pod(
        NS,
        {
            "metadata": {"name": name, **(metadata(uid) if metadata else {})},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "populate",
                        "image": f"{image}:0.1.0",
                        "args": [
                            f"--volume-path={path}",
                            "--secret-name=source",
                            "--cr-name=cr",
                            f"--cr-namespace={NS}",
                            f"--owner-uid={uid}",
                            f"--pvc-size={size}",
                            *source_args,
                        ],
                        "envFrom": [{"secretRef": {"name": "source"}}],
                        "env": [
                            {
                                "name": "POD_IP",
                                "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
                            }
                        ],
                        "ports": [{"name": "metrics", "containerPort": 8443}],
                        **attach,
                    }
                ],
                "volumes": [{"name": "target", "persistentVolumeClaim": {"claimName": "prime"}}],
            },
        },
    )
    percents = await _scrape_until_done(core, name, rf'^{metric}{{ownerUID="{uid}"}} (\d+)')
    pod = await core.read_namespaced_pod(name, NS)
    terminated = pod.status.container_statuses[0].state.terminated
    log = await core.read_namespaced_pod_log(name, NS)
    bound = await core.read_namespaced_persistent_volume_claim("prime", NS)
    volume = await core.read_persistent_volume(bound.spec.volume_name)
    backing = Path((volume.spec.host_path or volume.spec.local).path)
    return PopulatorRun(
        pod.status.phase,
        terminated.exit_code if terminated else None,
        log,
        backing if block else backing / "disk.img",
        percents,
    )


async def _scrape_until_done(core: Any, name: str, pattern: str) -> list[int]:
    percents: list[int] = []
    for _ in range(2400):
        pod = await core.read_namespaced_pod(name, NS)
        if pod.status.phase in ("Succeeded", "Failed"):
            return percents
        if pod.status.phase == "Running":
            try:
                text = await core.connect_get_namespaced_pod_proxy_with_path(
                    f"https:{name}:8443", NS, "metrics"
                )
            except ApiException as error:
                if error.status != 503:  # not listening yet, or already gone
                    raise
            else:
                if match := re.search(pattern, text, re.M):
                    percents.append(int(match.group(1)))
        await asyncio.sleep(0.05)
    raise AssertionError(f"populator pod {name} never finished")
