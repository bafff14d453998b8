"""Static storage populated: claims of ``kubernetes.io/no-provisioner`` (local volumes
with node affinity) and of ``storageClassName: ""``, against the cluster simulator, with
Forklift's failure cases: no fitting volume, a populator pod that cannot be scheduled on
its volume's node, and a volume taken by another claim while Hoist pins one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from services.controller import Controller
from services.controller.pinning import VOLUME_RESERVED, WAITING_FOR_VOLUME
from shared import populator as contract
from sim.ovirt.engine import Engine
from tests.conftest import eventually
from tests.controller.conftest import (
    NS,
    Seen,
    backing,
    claim_events,
    disk_ids,
    make_claim,
    make_populator,
    make_secret,
    wait_clean,
    wait_event,
    wait_populated,
    wait_status,
)
from tests.controller.test_ovirt import ovirt_credentials
from tests.populators.ovirt.conftest import assert_same_image
from tests.sim.ovirt.fixtures import new_disk

MiB = 1 << 20


def local_volume(
    root: Path, name: str, size: str, node: str | None, storage_class: str = "local-static"
) -> dict[str, Any]:
    """A volume an administrator made: a local path, on one node when ``node`` is given."""
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    spec: dict[str, Any] = {
        "capacity": {"storage": size},
        "accessModes": ["ReadWriteOnce"],
        "volumeMode": "Filesystem",
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": storage_class,
        "local": {"path": str(path)},
    }
    if node:
        spec["nodeAffinity"] = {
            "required": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
                        ]
                    }
                ]
            }
        }
    return {"metadata": {"name": name, "labels": {"tier": "local"}}, "spec": spec}


async def make_volumes(core: client.CoreV1Api, *volumes: dict[str, Any]) -> None:
    for volume in volumes:
        await core.create_persistent_volume(volume)

    async def available() -> bool:
        for volume in volumes:
            found = await core.read_persistent_volume(volume["metadata"]["name"])
            if found.status.phase != "Available":
                return False
        return True

    await eventually(available, what="static volumes Available")


@dataclass
class Static:
    """The fixtures every test here uses, in one."""

    engine: Engine
    core: client.CoreV1Api
    custom: client.CustomObjectsApi
    controller: Controller
    seen: Seen
    tmp_path: Path

    def parts(self) -> tuple[Engine, client.CoreV1Api, client.CustomObjectsApi, Seen, Path]:
        return self.engine, self.core, self.custom, self.seen, self.tmp_path


@pytest.fixture
def s(
    engine: Engine,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    controller: Controller,
    seen: Seen,
    tmp_path: Path,
) -> Static:
    return Static(engine, core, custom, controller, seen, tmp_path)


async def claim_onto(core: client.CoreV1Api, storage_class: str, stem: str, **kw: Any) -> Any:
    """The user claim of ``disk-st``, as the orchestrator makes it (hold selector and all)."""
    return await make_claim(
        core,
        "disk-st",
        contract.OVIRT.name,
        disk_ids(stem),
        mode="Filesystem",
        storage_class=storage_class,
        **kw,
    )


async def start(engine: Engine, core: client.CoreV1Api, custom: client.CustomObjectsApi) -> Any:
    disk = new_disk(engine, size="6MiB", allocated=0.6, extent="1MiB", layout="scattered")
    await make_secret(core, "ovirt-src", ovirt_credentials(engine))
    await make_populator(
        custom,
        contract.OVIRT.name,
        "disk-st",
        {"engineUrl": engine.api_url, "engineSecretName": "ovirt-src", "diskId": disk.id},
    )
    return disk


async def test_a_local_volume_is_pinned_populated_and_handed_over(s: Static) -> None:
    """The smallest fitting volume of three is pinned, filled on its node, and becomes the
    user claim's, holding the disk byte for byte."""
    engine, core, custom, seen, tmp_path = s.parts()
    root = tmp_path / "local"
    await make_volumes(
        core,
        local_volume(root, "pv-small", "8Mi", "node-1"),  # too small
        local_volume(root, "pv-big", "64Mi", "node-1"),
        local_volume(root, "pv-fit", "24Mi", "node-2"),  # the smallest that fits
    )
    disk = await start(engine, core, custom)
    claim = await claim_onto(core, "local-static", "static", total_bytes=disk.provisioned_size)
    uid = claim.metadata.uid
    pvc = await wait_populated(core, "disk-st")
    assert pvc.spec.volume_name == "pv-fit"
    volume = await core.read_persistent_volume("pv-fit")
    assert volume.spec.claim_ref.uid == uid
    assert volume.metadata.annotations[contract.POPULATED_FROM] == f"{NS}/disk-st"
    await assert_same_image(engine, disk, backing(volume, block=False))
    await wait_status(custom, contract.OVIRT.name, "disk-st", contract.Phase.SUCCEEDED)
    await wait_clean(core)
    for other in ("pv-small", "pv-big"):
        untouched = await core.read_persistent_volume(other)
        assert untouched.status.phase == "Available"
        assert untouched.spec.claim_ref is None
    # The prime was pre-bound to the volume, the pod placed by the volume's affinity (by
    # the scheduler, on node-2), not pinned to a node past it.
    prime: dict[str, Any] = next(iter(seen.primes.values()))
    pod: dict[str, Any] = next(iter(seen.pods.values()))
    assert prime["spec"]["volumeName"] == "pv-fit"
    assert "nodeName" not in pod["metadata"].get("annotations", {})
    terms = pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == ["node-2"]
    assert pod["spec"]["nodeName"] == "node-2"
    message = await wait_event(core, "disk-st", VOLUME_RESERVED)
    assert "pv-fit" in message
    assert "node-2" in message


async def test_no_fitting_volume_is_a_precise_wait_until_one_is_made(s: Static) -> None:
    """``storageClassName: ""``: the one volume is too small, another is of the wrong
    mode; the CR says exactly what is missing, and the copy starts once a volume fits."""
    engine, core, custom, seen, tmp_path = s.parts()
    root = tmp_path / "local"
    block = local_volume(root, "pv-block", "64Mi", None, storage_class="")
    block["spec"]["volumeMode"] = "Block"
    await make_volumes(core, local_volume(root, "pv-tiny", "4Mi", None, storage_class=""), block)
    disk = await start(engine, core, custom)
    await claim_onto(core, "", "none")
    status = await wait_status(custom, contract.OVIRT.name, "disk-st", contract.Phase.PENDING)

    async def waiting() -> bool:
        status.update(
            (
                await custom.get_namespaced_custom_object_status(
                    contract.GROUP, contract.VERSION, NS, contract.OVIRT.plural, "disk-st"
                )
            ).get("status")
            or {}
        )
        return status.get("reason") == WAITING_FOR_VOLUME

    await eventually(waiting, what="the wait for a volume")
    assert status["message"] == (
        'no Available PersistentVolume without a class (storageClassName "") with >= '
        f"{16 * MiB} bytes, volumeMode Filesystem, accessModes ReadWriteOnce"
    )
    assert not seen.primes
    assert not seen.pods
    await make_volumes(core, local_volume(root, "pv-new", "16Mi", None, storage_class=""))
    pvc = await wait_populated(core, "disk-st")
    assert pvc.spec.volume_name == "pv-new"
    await assert_same_image(
        engine, disk, backing(await core.read_persistent_volume("pv-new"), block=False)
    )
    assert (await core.read_persistent_volume("pv-tiny")).status.phase == "Available"


async def test_a_cordoned_node_is_waited_for_then_the_copy_runs_there(s: Static) -> None:
    """The only fitting volume is on node-1, which is cordoned: the populator pod cannot
    be scheduled, the CR says why in the scheduler's words; uncordoned, the copy runs."""
    engine, core, custom, seen, tmp_path = s.parts()
    await core.patch_node("node-1", {"spec": {"unschedulable": True}})
    await make_volumes(core, local_volume(tmp_path / "local", "pv-n1", "32Mi", "node-1"))
    disk = await start(engine, core, custom)
    await claim_onto(core, "local-static", "cordon")
    message = await wait_event(core, "disk-st", "PopulatorPodUnschedulable")
    assert "cannot be scheduled" in message
    assert "1 node(s) were unschedulable" in message
    status = await wait_status(custom, contract.OVIRT.name, "disk-st", contract.Phase.PENDING)
    assert status["reason"] == "PopulatorPodUnschedulable"
    await core.patch_node("node-1", {"spec": {"unschedulable": False}})
    pvc = await wait_populated(core, "disk-st")
    assert pvc.spec.volume_name == "pv-n1"
    assert len(seen.pods) == 1
    assert next(iter(seen.pods.values()))["spec"]["nodeName"] == "node-1"
    await assert_same_image(
        engine, disk, backing(await core.read_persistent_volume("pv-n1"), block=False)
    )


async def test_a_volume_taken_by_another_claim_is_never_overwritten(s: Static) -> None:
    """Another claim binds the volume Hoist chose between its look and its pin: the pin
    is refused (the volume changed), Hoist chooses the next volume; with none left it
    waits, and the other claim's volume and data stay as they were."""
    engine, core, custom, seen, tmp_path = s.parts()
    root = tmp_path / "local"
    await make_volumes(
        core,
        local_volume(root, "pv-a", "16Mi", "node-1"),
        local_volume(root, "pv-b", "32Mi", "node-2"),
    )
    (root / "pv-a" / "theirs.txt").write_text("someone else's data\n")
    kube = s.controller.reconciler.pinning.kube
    listed = kube.list
    raced: list[str] = []

    async def list_then_lose_the_race(*args: Any, **kwargs: Any) -> Any:
        result = await listed(*args, **kwargs)
        if not raced:
            raced.append("pv-a")
            await core.create_namespaced_persistent_volume_claim(
                NS,
                {
                    "metadata": {"name": "theirs"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "local-static",
                        "volumeName": "pv-a",
                        "resources": {"requests": {"storage": "16Mi"}},
                    },
                },
            )

            async def bound() -> bool:
                pv = await core.read_persistent_volume("pv-a")
                return bool(pv.spec.claim_ref and pv.spec.claim_ref.name == "theirs")

            await eventually(bound, what="pv-a bound to the other claim")
        return result

    kube.list = list_then_lose_the_race  # type: ignore[method-assign]
    disk = await start(engine, core, custom)
    await claim_onto(core, "local-static", "race")
    pvc = await wait_populated(core, "disk-st")
    assert raced == ["pv-a"]
    assert pvc.spec.volume_name == "pv-b"
    assert (root / "pv-a" / "theirs.txt").read_text() == "someone else's data\n"
    assert not (root / "pv-a" / "disk.img").exists()
    theirs = await core.read_persistent_volume("pv-a")
    assert theirs.spec.claim_ref.name == "theirs"
    assert contract.POPULATED_FROM not in (theirs.metadata.annotations or {})
    await assert_same_image(
        engine, disk, backing(await core.read_persistent_volume("pv-b"), block=False)
    )
    assert all(p["spec"]["volumeName"] == "pv-b" for p in seen.primes.values())
    events = [r for _, r, _ in await claim_events(core, "disk-st")]
    assert events.count(VOLUME_RESERVED) == 1


async def test_a_vms_second_disk_goes_to_the_node_of_its_first(s: Static) -> None:
    """A VM runs on one node, so its local volumes should be there: the second disk's
    volume is the smallest that fits on the first disk's node, not the smallest anywhere."""
    engine, core, custom, _, tmp_path = s.parts()
    root = tmp_path / "local"
    await make_volumes(
        core,
        local_volume(root, "pv-first", "16Mi", "node-2"),
        local_volume(root, "pv-small-n1", "20Mi", "node-1"),  # the smallest for the second
        local_volume(root, "pv-n2", "32Mi", "node-2"),
    )
    await start(engine, core, custom)
    await claim_onto(core, "local-static", "vm")
    assert (await wait_populated(core, "disk-st")).spec.volume_name == "pv-first"
    second = new_disk(engine, size="2MiB", allocated=1.0)
    await make_populator(
        custom,
        contract.OVIRT.name,
        "disk-nd",
        {"engineUrl": engine.api_url, "engineSecretName": "ovirt-src", "diskId": second.id},
    )
    vm = (await core.read_namespaced_persistent_volume_claim("disk-st", NS)).metadata.labels
    await make_claim(
        core,
        "disk-nd",
        contract.OVIRT.name,
        {
            "plan_id": vm[contract.PLAN],
            "migration_id": vm[contract.MIGRATION],
            "vm_id": vm[contract.VM],
            "disk_id": "second",
        },
        mode="Filesystem",
        storage_class="local-static",
    )
    pvc = await wait_populated(core, "disk-nd")
    assert pvc.spec.volume_name == "pv-n2"
    assert (await core.read_persistent_volume("pv-small-n1")).status.phase == "Available"


async def test_a_vms_disks_go_to_the_one_node_where_they_all_fit(s: Static) -> None:
    """The first disk to get a volume decides the VM's node, so it is chosen for all the
    VM's disks: the larger disk's smallest volume is on node-2, where the other disk has
    none, so both go to node-1 (its claim made first, so without the joint choice it
    would take node-2's and split the VM over two nodes)."""
    engine, core, custom, _, tmp_path = s.parts()
    root = tmp_path / "local"
    await make_volumes(
        core,
        local_volume(root, "pv-small-n1", "16Mi", "node-1"),
        local_volume(root, "pv-large-n1", "32Mi", "node-1"),
        local_volume(root, "pv-n2", "24Mi", "node-2"),  # the smallest for the larger disk
    )
    await start(engine, core, custom)
    second = new_disk(engine, size="2MiB", allocated=1.0)
    await make_populator(
        custom,
        contract.OVIRT.name,
        "disk-nd",
        {"engineUrl": engine.api_url, "engineSecretName": "ovirt-src", "diskId": second.id},
    )
    ids = disk_ids("vm")
    await make_claim(
        core,
        "disk-nd",
        contract.OVIRT.name,
        {**ids, "disk_id": "larger"},
        mode="Filesystem",
        storage_class="local-static",
        size="24Mi",
    )
    await make_claim(
        core, "disk-st", contract.OVIRT.name, ids, mode="Filesystem", storage_class="local-static"
    )
    larger, smaller = await wait_populated(core, "disk-nd"), await wait_populated(core, "disk-st")
    assert (larger.spec.volume_name, smaller.spec.volume_name) == ("pv-large-n1", "pv-small-n1")
    assert (await core.read_persistent_volume("pv-n2")).status.phase == "Available"


async def test_a_pinned_volume_given_to_someone_else_is_let_go(s: Static) -> None:
    """An administrator hands the volume pinned for Hoist (its pod still waiting for a
    cordoned node) to another claim: Hoist drops its prime and pod, says so, and fills
    another volume; the other claim's volume is never written."""
    engine, core, custom, seen, tmp_path = s.parts()
    await core.patch_node("node-1", {"spec": {"unschedulable": True}})
    root = tmp_path / "local"
    await make_volumes(
        core,
        local_volume(root, "pv-a", "16Mi", "node-1"),
        local_volume(root, "pv-b", "32Mi", "node-2"),
    )
    await start(engine, core, custom)
    await claim_onto(core, "local-static", "rebound")
    await wait_event(core, "disk-st", "PopulatorPodUnschedulable")
    # A whole new claimRef (a merge patch would keep the prime's uid in it).
    taken = {"namespace": NS, "name": "theirs", "uid": None, "resourceVersion": None}
    await core.patch_persistent_volume("pv-a", {"spec": {"claimRef": taken}})
    message = await wait_event(core, "disk-st", "VolumeTaken")
    assert message.startswith("volume pv-a now belongs to default/theirs")
    pvc = await wait_populated(core, "disk-st")
    assert pvc.spec.volume_name == "pv-b"
    assert not (root / "pv-a" / "disk.img").exists()
    assert len(seen.primes) == 2
    assert len(seen.pods) == 2
