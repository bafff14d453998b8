"""An OpenStack (Glance) image populated into a Filesystem claim of an Immediate class, end
to end: the real OpenStack populator runs in the pod against real Keystone and Glance, and
``disk.img`` in the user claim's volume is the image byte for byte afterwards."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import httpx
from kubernetes_asyncio import client

from services.controller import Controller
from shared import populator as contract
from shared.catalog import POPULATOR_POD_FINISHED, POPULATOR_POD_STARTED
from sim.certs import client_context
from sim.openstack.cloud import Cloud
from tests.conftest import eventually
from tests.controller.conftest import (
    NS,
    Heard,
    MiB,
    Seen,
    backing,
    disk_ids,
    make_claim,
    make_populator,
    make_secret,
    wait_clean,
    wait_populated,
    wait_status,
)


def upload_image(cloud: Cloud, data: bytes) -> str:
    """A raw Glance image holding ``data`` (blocking: run in a thread)."""
    conn = cloud.connection()
    try:
        image = conn.image.create_image(
            name=f"controller-{os.urandom(3).hex()}", disk_format="raw", container_format="bare"
        )
        token = conn.session.get_token()
        with httpx.Client(verify=client_context(cloud.ca_file), timeout=60) as http:
            http.put(
                f"{cloud.glance_url}/v2/images/{image.id}/file",
                content=data,
                headers={"X-Auth-Token": token, "Content-Type": "application/octet-stream"},
            ).raise_for_status()
        deadline = time.monotonic() + 60
        while conn.image.get_image(image.id).status != "active":
            assert time.monotonic() < deadline, "the image never became active"
            time.sleep(0.1)
        return str(image.id)
    finally:
        conn.close()


async def test_openstack_image_fills_a_filesystem_claim(
    cloud: Cloud,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    controller: Controller,
    heard: Heard,
    seen: Seen,
    tmp_path: Path,
) -> None:
    # Data, a hole, data: what a real disk looks like to the sparse copy.
    data = os.urandom(MiB) + bytes(2 * MiB) + os.urandom(MiB + 4096)
    image_id = await asyncio.to_thread(upload_image, cloud, data)
    ids = disk_ids("os")
    await make_secret(core, "os-src", cloud.credentials())
    await make_populator(
        custom,
        contract.OPENSTACK.name,
        "disk-b",
        {"identityUrl": cloud.auth_url, "secretName": "os-src", "imageId": image_id},
    )
    claim = await make_claim(
        core,
        "disk-b",
        contract.OPENSTACK.name,
        ids,
        mode="Filesystem",
        storage_class="standard",
        total_bytes=len(data),
    )
    uid = claim.metadata.uid

    pvc = await wait_populated(core, "disk-b")
    volume = await core.read_persistent_volume(pvc.spec.volume_name)
    assert volume.spec.claim_ref.uid == uid
    assert volume.metadata.annotations[contract.POPULATED_FROM] == f"{NS}/disk-b"
    assert backing(volume, block=False).read_bytes() == data
    status = await wait_status(custom, contract.OPENSTACK.name, "disk-b", contract.Phase.SUCCEEDED)
    assert status["progress"] == "100"
    assert status["recreations"] == 0
    await wait_clean(core)

    pod: dict[str, Any] = next(iter(seen.pods.values()))
    container = pod["spec"]["containers"][0]
    assert container["args"][:2] == ["openstack", "--volume-path=/mnt/disk"]
    assert container["args"][-2:] == [f"--endpoint={cloud.auth_url}", f"--image-id={image_id}"]
    assert {"name": "target", "mountPath": "/mnt/disk"} in container["volumeMounts"]
    assert "nodeName" not in pod["spec"] or pod["spec"]["nodeName"]  # the scheduler's pick
    assert len(seen.pods) == 1
    assert len(seen.primes) == 1

    async def announced() -> bool:
        return bool(heard.of(POPULATOR_POD_STARTED) and heard.of(POPULATOR_POD_FINISHED))

    await eventually(announced, what="started and finished heard on NATS")
    assert heard.of(POPULATOR_POD_STARTED)[0].data.populator_kind == "openstack"
