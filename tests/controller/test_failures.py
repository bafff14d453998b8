"""The failure modes of ../shared/reference/populators.md, each against the real cluster
simulator: a populator that keeps failing, a CR that comes after its
claim, and a claim deleted while its disk is being copied."""

from __future__ import annotations

import uuid

from kubernetes_asyncio import client

from services.controller import Controller
from shared import populator as contract
from shared.catalog import POPULATOR_POD_FINISHED
from sim.ovirt.engine import Engine
from sim.ovirt.scenario import Fault
from tests.conftest import eventually
from tests.controller.conftest import (
    Heard,
    MiB,
    Seen,
    claim_events,
    disk_ids,
    leftovers,
    make_claim,
    make_populator,
    make_secret,
    not_found,
    populator_status,
    running_pod,
    sleep_a_little,
    wait_clean,
    wait_event,
    wait_populated,
    wait_status,
)
from tests.controller.test_ovirt import ovirt_credentials
from tests.sim.ovirt.fixtures import new_disk


async def test_a_populator_that_keeps_failing_fails_the_cr_after_its_recreations(
    engine: Engine,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    controller: Controller,
    heard: Heard,
    seen: Seen,
) -> None:
    unknown = str(uuid.uuid4())
    await make_secret(core, "ovirt-src", ovirt_credentials(engine))
    await make_populator(
        custom,
        contract.OVIRT.name,
        "disk-f",
        {"engineUrl": engine.api_url, "engineSecretName": "ovirt-src", "diskId": unknown},
    )
    claim = await make_claim(
        core,
        "disk-f",
        contract.OVIRT.name,
        disk_ids("fail"),
        mode="Block",
        storage_class="standard",
    )

    status = await wait_status(custom, contract.OVIRT.name, "disk-f", contract.Phase.FAILED, 120)
    assert status["reason"] == contract.Reason.POPULATOR_FAILED
    assert status["recreations"] == 3
    assert "failed 4 times" in status["message"]
    assert "exited with code 1" in status["message"]
    assert unknown in status["log"]  # the populator's own words, kept
    assert "ovirt-populator: failed" in status["log"]
    assert len(status["log"].encode()) <= 16 * 1024
    assert status["pod"] == contract.populator_pod(claim.metadata.uid)

    # Exactly 4 pods (the first and 3 recreations), all gone now, and the claim let go.
    await wait_clean(core)
    assert len(seen.pods) == 4
    assert all(p["status"]["phase"] == "Failed" for p in seen.pods.values())
    pvc = await core.read_namespaced_persistent_volume_claim("disk-f", "default")
    assert contract.FINALIZER not in (pvc.metadata.finalizers or [])
    assert pvc.metadata.annotations[contract.RECREATIONS] == "3"
    warnings = [(r, m) for t, r, m in await claim_events(core, "disk-f") if t == "Warning"]
    assert [r for r, _ in warnings].count(contract.Reason.POD_FAILED) == 3
    assert (contract.Reason.POPULATOR_FAILED, status["message"]) in warnings

    async def four_finished() -> bool:
        return len({e.id for e in heard.of(POPULATOR_POD_FINISHED)}) == 4

    await eventually(four_finished, what="4 failed pods announced")
    finished = {e.id: e.data for e in heard.of(POPULATOR_POD_FINISHED)}
    assert {d.outcome for d in finished.values()} == {"Failed"}
    assert sum(1 for d in finished.values() if d.error and d.error.permanent) == 1

    # Failed is final: nothing more is made, however often the claim is looked at.
    await sleep_a_little()
    await sleep_a_little()
    assert len(seen.pods) == 4


async def test_a_cr_created_late_or_deleted_early_is_waited_for(
    engine: Engine,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    controller: Controller,
    seen: Seen,
) -> None:
    """The claim comes first, then its CR, then the Secret; mid-copy the CR is deleted (a
    cleanup gone wrong) and made again: the controller waits, says so, and finishes with
    the one pod it started."""
    disk = new_disk(engine, size="4MiB", allocated=0.5, extent="256KiB", layout="scattered")
    engine.add_fault(Fault("bandwidth", disk=disk.id, bytes_per_second=MiB // 2))
    spec = {"engineUrl": engine.api_url, "engineSecretName": "late-src", "diskId": disk.id}
    claim = await make_claim(
        core,
        "disk-late",
        contract.OVIRT.name,
        disk_ids("late"),
        mode="Block",
        storage_class="standard",
    )
    message = await wait_event(core, "disk-late", "WaitingForSource")
    assert f"{contract.OVIRT.name} default/disk-late" in message
    await make_populator(custom, contract.OVIRT.name, "disk-late", spec)
    message = await wait_event(core, "disk-late", "WaitingForSecret")
    assert "default/late-src" in message
    status = await wait_status(custom, contract.OVIRT.name, "disk-late", contract.Phase.PENDING)
    assert status["reason"] == "WaitingForSecret"
    assert not seen.pods
    await make_secret(core, "late-src", ovirt_credentials(engine))
    await running_pod(core, claim.metadata.uid)

    await custom.delete_namespaced_custom_object(
        contract.GROUP, contract.VERSION, "default", contract.OVIRT.plural, "disk-late"
    )

    async def waiting_again() -> bool:
        events = await core.list_namespaced_event("default")
        return any(
            e.reason == "WaitingForSource" and (e.count or 1) >= 2
            for e in events.items
            if e.involved_object.name == "disk-late"
        )

    await eventually(waiting_again, what="the wait for the CR told again")
    pod = await core.read_namespaced_pod(contract.populator_pod(claim.metadata.uid), "default")
    assert pod.status.phase in ("Running", "Succeeded")  # the copy goes on meanwhile
    await make_populator(custom, contract.OVIRT.name, "disk-late", spec)
    await wait_populated(core, "disk-late")
    await wait_status(custom, contract.OVIRT.name, "disk-late", contract.Phase.SUCCEEDED)
    await wait_clean(core)
    assert len(seen.pods) == 1


async def test_a_stale_status_from_an_earlier_claim_is_reset(
    engine: Engine,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    controller: Controller,
) -> None:
    """A CR left Failed by an earlier run (another claim) must not fail the new claim."""
    disk = new_disk(engine, size="2MiB", allocated=1.0)
    await make_secret(core, "ovirt-src", ovirt_credentials(engine))
    await make_populator(
        custom,
        contract.OVIRT.name,
        "disk-again",
        {"engineUrl": engine.api_url, "engineSecretName": "ovirt-src", "diskId": disk.id},
    )
    await custom.patch_namespaced_custom_object_status(
        contract.GROUP,
        contract.VERSION,
        "default",
        contract.OVIRT.plural,
        "disk-again",
        {"status": {"phase": "Failed", "reason": "PopulatorFailed", "claimUID": "earlier"}},
        _content_type="application/merge-patch+json",
    )
    await make_claim(
        core,
        "disk-again",
        contract.OVIRT.name,
        disk_ids("again"),
        mode="Block",
        storage_class="standard",
    )
    await wait_populated(core, "disk-again")
    status = await wait_status(custom, contract.OVIRT.name, "disk-again", contract.Phase.SUCCEEDED)
    assert status["recreations"] == 0


async def test_a_claim_deleted_mid_copy_is_cleaned_up(
    engine: Engine,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    controller: Controller,
    heard: Heard,
) -> None:
    # Data in small extents (the populator's progress moves per extent), copied slowly.
    disk = new_disk(engine, size="8MiB", allocated=0.5, extent="256KiB", layout="scattered")
    engine.add_fault(Fault("bandwidth", disk=disk.id, bytes_per_second=MiB // 4))
    await make_secret(core, "ovirt-src", ovirt_credentials(engine))
    await make_populator(
        custom,
        contract.OVIRT.name,
        "disk-d",
        {"engineUrl": engine.api_url, "engineSecretName": "ovirt-src", "diskId": disk.id},
    )
    claim = await make_claim(
        core, "disk-d", contract.OVIRT.name, disk_ids("del"), mode="Block", storage_class="standard"
    )
    await running_pod(core, claim.metadata.uid)
    # While it copies, the CR shows how far it got (read from the pod's metrics), short
    # of 100 until the pod succeeds.
    seen_progress: list[str] = []

    async def moving() -> bool:
        status = await populator_status(custom, contract.OVIRT.name, "disk-d")
        seen_progress.append(str(status.get("progress", "")))
        return status.get("progress", "0") not in ("", "0")

    await eventually(moving, within=30, every=0.2, what="progress in the CR")
    assert 0 < int(seen_progress[-1]) < 100
    await core.delete_namespaced_persistent_volume_claim("disk-d", "default")

    async def gone() -> bool:
        return await not_found(core.read_namespaced_persistent_volume_claim, "disk-d", "default")

    await eventually(gone, within=30, what="the user claim deleted")
    await wait_clean(core)
    assert await leftovers(core) == ([], [])

    async def canceled() -> bool:
        return any(e.data.outcome == "Canceled" for e in heard.of(POPULATOR_POD_FINISHED))

    await eventually(canceled, what="the pod's end announced as Canceled")
