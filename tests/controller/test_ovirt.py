"""An oVirt disk populated into a Block claim of a WaitForFirstConsumer class, end to end:
the real oVirt populator runs in the simulated cluster's pod, the controller hands the
volume over, and the user claim's volume holds the disk byte for byte afterwards."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client

from services.controller import Controller
from shared import populator as contract
from shared.bus import Bus
from shared.catalog import MIGRATIONS, POPULATOR_POD_FINISHED, POPULATOR_POD_STARTED
from sim.ovirt.engine import Engine
from tests.conftest import eventually
from tests.controller.conftest import (
    NS,
    Heard,
    Seen,
    backing,
    claim_events,
    disk_ids,
    make_claim,
    make_consumer,
    make_populator,
    make_secret,
    sleep_a_little,
    wait_clean,
    wait_event,
    wait_populated,
    wait_status,
)
from tests.populators.ovirt.conftest import assert_same_image, imageio_checksum
from tests.sim.ovirt.fixtures import new_disk, transfer_phase


def ovirt_credentials(engine: Engine) -> dict[str, str]:
    return {"user": "admin@internal", "password": "secret", "cacert": engine.cert.ca_pem}


async def test_ovirt_disk_fills_a_block_claim_under_wait_for_first_consumer(
    engine: Engine,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    controller: Controller,
    nats_bus: Bus,
    heard: Heard,
    seen: Seen,
) -> None:
    disk = new_disk(engine, size="6MiB", allocated=0.6, extent="1MiB", layout="scattered")
    ids = disk_ids("ovirt")
    await make_secret(core, "ovirt-src", ovirt_credentials(engine))
    await make_populator(
        custom,
        contract.OVIRT.name,
        "disk-a",
        {"engineUrl": engine.api_url, "engineSecretName": "ovirt-src", "diskId": disk.id},
    )
    claim = await make_claim(
        core,
        "disk-a",
        contract.OVIRT.name,
        ids,
        mode="Block",
        storage_class="standard-wffc",
        total_bytes=disk.provisioned_size,
    )
    uid = claim.metadata.uid
    # Nothing consumes the claim yet: the controller waits, and says so.
    message = await wait_event(core, "disk-a", "WaitingForFirstConsumer")
    assert "first consumer" in message
    await sleep_a_little()
    assert not seen.pods
    assert not seen.primes
    await make_consumer(core, "disk-a", block=True)

    pvc = await wait_populated(core, "disk-a")
    volume = await core.read_persistent_volume(pvc.spec.volume_name)
    assert volume.spec.claim_ref.uid == uid
    assert volume.metadata.annotations[contract.POPULATED_FROM] == f"{NS}/disk-a"
    # The pod's block checksum of the data, verified with imageio's, stays with the volume.
    checksum = contract.BlockChecksum.parse(
        volume.metadata.annotations[contract.CHECKSUM_ANNOTATION]
    )
    assert checksum is not None
    assert checksum.verified
    assert checksum.value == await imageio_checksum(engine, disk)
    await assert_same_image(engine, disk, backing(volume, block=True))
    assert await transfer_phase(engine, disk) == "finished_success"
    status = await wait_status(custom, contract.OVIRT.name, "disk-a", contract.Phase.SUCCEEDED)
    assert status["progress"] == "100"
    assert status["claimUID"] == uid
    await wait_clean(core)

    # One pod and one prime claim, as the contract describes them.
    assert len(seen.pods) == 1
    assert len(seen.primes) == 1
    pod: dict[str, Any] = next(iter(seen.pods.values()))
    prime: dict[str, Any] = next(iter(seen.primes.values()))
    node = pvc.metadata.annotations[contract.SELECTED_NODE]
    assert prime["metadata"]["name"] == contract.prime_claim(uid)
    assert prime["metadata"]["annotations"][contract.SELECTED_NODE] == node
    assert prime["spec"]["volumeMode"] == "Block"
    assert prime["metadata"]["ownerReferences"][0]["uid"] == uid
    assert pod["metadata"]["name"] == contract.populator_pod(uid)
    assert pod["metadata"]["ownerReferences"][0]["uid"] == uid
    assert pod["spec"]["nodeName"] == node
    assert contract.missing(pod["metadata"]["labels"], pod["metadata"]["annotations"]) == []
    assert pod["metadata"]["labels"][contract.DISK] == ids["disk_id"]
    assert pod["metadata"]["annotations"][contract.OWNER_UID] == uid
    container = pod["spec"]["containers"][0]
    assert container["name"] == "populate"
    assert "command" not in container
    assert container["args"] == [
        "ovirt",
        "--volume-path=/dev/block",
        "--secret-name=ovirt-src",
        "--cr-name=disk-a",
        f"--cr-namespace={NS}",
        f"--owner-uid={uid}",
        "--pvc-size=16Mi",
        f"--engine-url={engine.api_url}",
        f"--disk-id={disk.id}",
    ]
    assert container["volumeDevices"] == [{"name": "target", "devicePath": "/dev/block"}]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["spec"]["securityContext"]["runAsUser"] == 107
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["status"]["phase"] == "Succeeded"

    # Announced once each, with the disk's ids and where to scrape.
    async def both() -> bool:
        return bool(heard.of(POPULATOR_POD_STARTED) and heard.of(POPULATOR_POD_FINISHED))

    await eventually(both, what="started and finished heard on NATS")
    started = heard.of(POPULATOR_POD_STARTED)[0]
    assert started.id == f"populator-started-{pod['metadata']['uid']}"
    assert started.data.disk_id == ids["disk_id"]
    assert started.data.plan_id == ids["plan_id"]
    assert started.data.owner_uid == uid
    assert started.data.pod_ip
    assert started.data.total_bytes == disk.provisioned_size
    assert started.data.pod.name == contract.populator_pod(uid)
    finished = heard.of(POPULATOR_POD_FINISHED)[0]
    assert finished.data.outcome == "Succeeded"
    info = await nats_bus.js.stream_info(
        nats_bus.stream_name(MIGRATIONS), subjects_filter=nats_bus.subject("populator.>")
    )
    assert sum((info.state.subjects or {}).values()) == 2

    reasons = [reason for _, reason, _ in await claim_events(core, "disk-a")]
    for step in (
        "PrimeClaimCreated",
        "PopulatorPodCreated",
        "VolumeHandedOver",
        "PopulationCompleted",
    ):
        assert step in reasons, reasons
