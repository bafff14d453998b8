"""The OpenStack populator as it runs in production: in a pod of the (simulated) cluster.

The kubelet runs the real program with Forklift's arguments, the Secret as env and the
prime claim's PV (a directory) mounted at `/mnt/disk`; the image must land byte-exact and
sparse in `disk.img`, with progress visible through the API server's pod proxy.
"""

from __future__ import annotations

from pathlib import Path

from sim.openstack.cloud import Cloud
from tests.populators.in_cluster import cluster_for, run_populator
from tests.populators.openstack.conftest import allocated


async def test_populator_pod_copies_into_a_filesystem_claim(
    cloud: Cloud, web_image: tuple[str, Path], tmp_path: Path
) -> None:
    image_id, source = web_image
    image = "quay.io/hoist/openstack-populator"
    async with cluster_for(tmp_path, image, "services.populators.openstack") as core:
        run = await run_populator(
            core,
            image,
            [f"--endpoint={cloud.auth_url}", f"--image-id={image_id}"],
            cloud.credentials(),
            block=False,
            size="64Mi",
            metric="openstack_populator_progress",
        )
    assert run.phase == "Succeeded", run.log
    assert run.log.rstrip().endswith("openstack-populator: done")
    assert cloud.credentials()["password"] not in run.log
    assert run.target.read_bytes() == source.read_bytes()
    assert allocated(run.target) <= allocated(source)
    assert all(0 <= p <= 100 for p in run.percents)
