"""The oVirt populator as it runs in production: in a pod of the (simulated) cluster.

The kubelet runs the real program with Forklift's arguments, the Secret as env and the
prime claim's PV (a sparse file) as the block device `/dev/block`; the copy must be
byte-exact and its progress visible through the API server's pod proxy while it runs.
"""

from __future__ import annotations

from pathlib import Path

from sim.ovirt.engine import Engine
from sim.ovirt.scenario import Fault
from tests.populators.in_cluster import cluster_for, run_populator
from tests.populators.ovirt.conftest import assert_same_image
from tests.sim.ovirt.fixtures import MiB, new_disk, transfer_phase


async def test_populator_pod_copies_into_a_block_claim(engine: Engine, tmp_path: Path) -> None:
    disk = new_disk(engine, size="48MiB", allocated=0.5, extent="1MiB", layout="scattered")
    # Slow enough that the test can watch progress through the API server's proxy.
    engine.add_fault(Fault("bandwidth", disk=disk.id, bytes_per_second=12 * MiB))
    image = "quay.io/hoist/ovirt-populator"
    async with cluster_for(tmp_path, image, "services.populators.ovirt") as core:
        run = await run_populator(
            core,
            image,
            [f"--engine-url={engine.api_url}", f"--disk-id={disk.id}"],
            {"user": "admin@internal", "password": "secret", "cacert": engine.cert.ca_pem},
            block=True,
            size="64Mi",
            metric="ovirt_progress",
        )
    assert run.phase == "Succeeded", run.log
    assert run.exit_code == 0
    assert "ovirt-populator: done" in run.log
    assert engine.cert.ca_pem.splitlines()[1] not in run.log  # the Secret stays out
    await assert_same_image(engine, disk, run.target)
    assert await transfer_phase(engine, disk) == "finished_success"
    assert run.percents
    assert run.percents == sorted(run.percents)
