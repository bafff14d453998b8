"""Multi-stage (warm) CRs against the cluster simulator: one pod per checkpoint into one
prime claim, each stage recorded in ``status.stages``, the volume handed over only after
the final stage. The populator image here is ``stagepod.py`` (a stage pod steered by
files the test writes), so each stage's outcome and timing is the test's to choose."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from services.controller import Controller
from services.controller.staging import OUT_OF_ORDER, PAUSED, WAITING_FOR_CHECKPOINT
from shared import populator as contract
from shared.catalog import POPULATOR_POD_FINISHED
from shared.populator.stages import (
    STAGE_ANNOTATION,
    STAGE_FAILED,
    BackupMode,
    Checkpoint,
    StageArgs,
    spec_with_stages,
)
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from tests.conftest import eventually, kube_client
from tests.controller.conftest import (
    IMAGE,
    NS,
    PLURALS,
    Heard,
    Seen,
    claim_events,
    disk_ids,
    make_claim,
    make_populator,
    make_secret,
    populator_status,
    sleep_a_little,
    wait_clean,
    wait_event,
    wait_populated,
    wait_status,
)

STAGE_POD = Path(__file__).with_name("stagepod.py")
KIND = contract.OVIRT.name


@pytest.fixture
def control(tmp_path: Path) -> Path:
    path = tmp_path / "control"
    path.mkdir()
    return path


@pytest.fixture
async def kube_sim(tmp_path: Path, control: Path) -> AsyncIterator[Cluster]:
    """The cluster, its populator image a stage pod steered from ``control``."""
    images = {IMAGE.rsplit(":", 1)[0]: [sys.executable, str(STAGE_POD), "--control", str(control)]}
    config = ClusterConfig(storage_root=tmp_path / "volumes", images=images)
    async with Cluster(config) as sim:
        yield sim


@pytest.fixture
async def api(kube_sim: Cluster) -> AsyncIterator[client.ApiClient]:
    async with kube_client(kube_sim) as api:
        yield api


# --- the pipeline's part: a warm CR, and its checkpoints ---------------------------------


def full(current: str) -> Checkpoint:
    return Checkpoint(current=current, backup_id=f"backup-{current}")


def incremental(current: str, previous: str) -> Checkpoint:
    return Checkpoint(
        current=current,
        backup_id=f"backup-{current}",
        previous=previous,
        mode=BackupMode.INCREMENTAL,
    )


async def make_warm(core: client.CoreV1Api, custom: client.CustomObjectsApi, name: str) -> Any:
    """Secret, a CR with ``checkpoints: []`` and its claim; the claim."""
    await make_secret(core, "src", {"user": "u", "password": "p"})
    spec = {"engineUrl": "https://engine.invalid", "engineSecretName": "src", "diskId": "d-1"}
    await make_populator(custom, KIND, name, spec_with_stages(spec, [], False))
    return await make_claim(
        core, name, KIND, disk_ids(name), mode="Filesystem", storage_class="standard"
    )


async def set_checkpoints(
    custom: client.CustomObjectsApi, name: str, checkpoints: list[Checkpoint], final: bool
) -> None:
    """What the orchestrator writes: the whole list (a merge patch replaces it)."""
    await custom.patch_namespaced_custom_object(
        contract.GROUP,
        contract.VERSION,
        NS,
        PLURALS[KIND],
        name,
        {"spec": spec_with_stages({}, checkpoints, final)},
        _content_type="application/merge-patch+json",
    )


async def wait_stages(
    custom: client.CustomObjectsApi, name: str, currents: list[str], within: float = 30
) -> dict[str, Any]:
    """The CR's status once exactly ``currents`` are recorded."""
    last: dict[str, Any] = {}

    async def recorded() -> bool:
        last.clear()
        last.update(await populator_status(custom, KIND, name))
        return [s["current"] for s in last.get("stages") or []] == currents

    try:
        await eventually(recorded, within=within, every=0.1, what=f"stages {currents}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; status: {last}") from None
    return last


async def wait_reason(
    custom: client.CustomObjectsApi, name: str, reason: str, within: float = 30
) -> dict[str, Any]:
    last: dict[str, Any] = {}

    async def reached() -> bool:
        last.clear()
        last.update(await populator_status(custom, KIND, name))
        return last.get("reason") == reason

    try:
        await eventually(reached, within=within, every=0.1, what=f"reason {reason}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; status: {last}") from None
    return last


def runs(control: Path) -> list[list[str]]:
    """The args of every stage pod run so far, oldest first."""
    path = control / "runs.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def runs_of(control: Path, current: str) -> int:
    return sum(1 for args in runs(control) if f"--checkpoint={current}" in args)


def stage_flags(args: list[str]) -> list[str]:
    flags = {flag for flag, _ in StageArgs.FLAGS} | {StageArgs.FRESH_FLAG}
    return [a for a in args if a.split("=", 1)[0] in flags]


def pods_of(seen: Seen) -> list[dict[str, Any]]:
    """The stage pods ever made, oldest first."""
    return sorted(seen.pods.values(), key=lambda p: int(p["metadata"]["resourceVersion"]))


def volume_dir(volume: Any) -> Path:
    source = volume.spec.host_path or volume.spec.local
    return Path(source.path)


async def wait_running(core: client.CoreV1Api, uid: str, current: str) -> Any:
    """The pod of stage ``current`` once Running."""
    found: list[Any] = []

    async def running() -> bool:
        try:
            pod = await core.read_namespaced_pod(contract.populator_pod(uid), NS)
        except client.ApiException:
            return False
        found[:] = [pod]
        stage = (pod.metadata.annotations or {}).get(STAGE_ANNOTATION)
        return bool(stage == current and pod.status.phase == "Running" and pod.status.pod_ip)

    await eventually(running, within=30, every=0.05, what=f"the pod of {current} running")
    return found[0]


# --- the tests ---------------------------------------------------------------------------


async def test_stages_are_copied_one_by_one_and_handed_over_after_the_final(
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    controller: Controller,
    control: Path,
    seen: Seen,
    heard: Heard,
) -> None:
    claim = await make_warm(core, custom, "warm-a")
    uid = claim.metadata.uid

    # No checkpoint yet: it waits, with no prime claim and no pod.
    status = await wait_reason(custom, "warm-a", WAITING_FOR_CHECKPOINT)
    assert status["phase"] == contract.Phase.PENDING
    await wait_event(core, "warm-a", WAITING_FOR_CHECKPOINT)
    await sleep_a_little()
    assert not seen.pods
    assert not seen.primes
    told = [r for _, r, _ in await claim_events(core, "warm-a") if r == WAITING_FOR_CHECKPOINT]
    assert len(told) == 1

    # Stage 1: a full copy onto an empty volume, then a pause.
    (control / "c1.result").write_text(json.dumps({"copied": 3000, "zeroed": 96}))
    await set_checkpoints(custom, "warm-a", [full("c1")], False)
    status = await wait_stages(custom, "warm-a", ["c1"])
    stage = status["stages"][0]
    assert stage["bytes"] == 3096
    assert stage["backupId"] == "backup-c1"
    assert stage["mode"] == "full"
    assert stage["pod"] == contract.populator_pod(uid)
    assert stage["startedAt"]
    assert stage["endedAt"] >= stage["startedAt"]
    status = await wait_reason(custom, "warm-a", PAUSED)
    assert status["phase"] == contract.Phase.RUNNING
    assert "1 stage copied (c1)" in status["message"]
    assert stage_flags(runs(control)[0]) == [
        "--backup-id=backup-c1",
        "--backup-mode=full",
        "--from-checkpoint=",
        "--checkpoint=c1",
        "--fresh-volume",
    ]
    await wait_clean_pods(core)
    pvc = await core.read_namespaced_persistent_volume_claim("warm-a", NS)
    assert pvc.status.phase == "Pending"  # not handed over
    prime = await core.read_namespaced_persistent_volume_claim(contract.prime_claim(uid), NS)

    # Stage 2, incremental: seen copying, with the stage in the CR's message.
    (control / "c2.hold").touch()
    (control / "c2.result").write_text(json.dumps({"copied": 500, "zeroed": 0}))
    await set_checkpoints(custom, "warm-a", [full("c1"), incremental("c2", "c1")], False)
    pod = await wait_running(core, uid, "c2")
    assert stage_flags(pod.spec.containers[0].args) == [
        "--backup-id=backup-c2",
        "--backup-mode=incremental",
        "--from-checkpoint=c1",
        "--checkpoint=c2",
    ]
    status = await wait_reason(custom, "warm-a", "Copying")
    assert "stage 2 (incremental from c1)" in status["message"]
    (control / "c2.hold").unlink()
    status = await wait_stages(custom, "warm-a", ["c1", "c2"])
    assert [s["bytes"] for s in status["stages"]] == [3096, 500]
    status = await wait_reason(custom, "warm-a", PAUSED)
    assert "2 stages copied (c1, c2)" in status["message"]
    pvc = await core.read_namespaced_persistent_volume_claim("warm-a", NS)
    assert pvc.status.phase == "Pending"

    # The final stage: then the hand-over, the stages kept in the Succeeded status.
    await set_checkpoints(
        custom, "warm-a", [full("c1"), incremental("c2", "c1"), incremental("c3", "c2")], True
    )
    pvc = await wait_populated(core, "warm-a")
    status = await wait_status(custom, KIND, "warm-a", contract.Phase.SUCCEEDED)
    assert [s["current"] for s in status["stages"]] == ["c1", "c2", "c3"]
    assert status["progress"] == "100"
    await wait_clean(core)
    assert pvc.spec.volume_name == prime.spec.volume_name  # the one volume, all along
    volume = await core.read_persistent_volume(pvc.spec.volume_name)
    assert (volume_dir(volume) / "stages.log").read_text().split() == ["c1", "c2", "c3"]
    assert len(seen.primes) == 1
    assert [p["metadata"]["annotations"][STAGE_ANNOTATION] for p in pods_of(seen)] == [
        "c1",
        "c2",
        "c3",
    ]
    assert [runs_of(control, c) for c in ("c1", "c2", "c3")] == [1, 1, 1]

    async def three_finished() -> bool:
        return len({e.id for e in heard.of(POPULATOR_POD_FINISHED)}) == 3

    await eventually(three_finished, what="each stage pod's end announced")
    assert {e.data.outcome for e in heard.of(POPULATOR_POD_FINISHED)} == {"Succeeded"}


async def wait_clean_pods(core: client.CoreV1Api) -> None:
    async def gone() -> bool:
        pods = await core.list_namespaced_pod(NS)
        return not [p for p in pods.items if p.metadata.name.startswith("populate-")]

    await eventually(gone, within=30, every=0.1, what="the stage pod deleted")


async def test_a_replaced_checkpoint_retires_its_pod(
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    controller: Controller,
    control: Path,
    seen: Seen,
    heard: Heard,
) -> None:
    claim = await make_warm(core, custom, "warm-b")
    uid = claim.metadata.uid
    await set_checkpoints(custom, "warm-b", [full("c1")], False)
    await wait_stages(custom, "warm-b", ["c1"])
    prime = await core.read_namespaced_persistent_volume_claim(contract.prime_claim(uid), NS)

    (control / "c2.hold").touch()
    await set_checkpoints(custom, "warm-b", [full("c1"), incremental("c2", "c1")], False)
    held = await wait_running(core, uid, "c2")
    # Its backup failed: the orchestrator replaces the checkpoint nobody copied.
    await set_checkpoints(custom, "warm-b", [full("c1"), incremental("c2b", "c1")], False)
    message = await wait_event(core, "warm-b", "PopulatorPodRetired")
    assert "checkpoint c2" in message
    assert "c2b" in message
    status = await wait_stages(custom, "warm-b", ["c1", "c2b"])
    assert runs_of(control, "c2b") == 1
    await wait_reason(custom, "warm-b", PAUSED)

    async def canceled() -> bool:
        return any(
            e.data.outcome == "Canceled" and e.data.pod.uid == held.metadata.uid
            for e in heard.of(POPULATOR_POD_FINISHED)
        )

    await eventually(canceled, what="the retired pod's end announced as Canceled")
    # The prime with stage 1 stayed: the same claim, the same volume.
    assert [p["metadata"]["uid"] for p in seen.primes.values()] == [prime.metadata.uid]
    assert status["stages"][1]["backupId"] == "backup-c2b"
    assert [p["metadata"]["annotations"][STAGE_ANNOTATION] for p in pods_of(seen)] == [
        "c1",
        "c2",
        "c2b",
    ]


async def test_a_replaced_first_checkpoint_starts_on_a_new_volume(
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    controller: Controller,
    control: Path,
    seen: Seen,
) -> None:
    """Nothing copied yet: the prime goes with the retired pod, since the new first stage
    leaves the ranges its source reads as zero unwritten (``--fresh-volume``)."""
    claim = await make_warm(core, custom, "warm-f")
    uid = claim.metadata.uid
    (control / "c1.hold").touch()
    await set_checkpoints(custom, "warm-f", [full("c1")], False)
    await wait_running(core, uid, "c1")
    await set_checkpoints(custom, "warm-f", [full("c1b")], True)
    await wait_populated(core, "warm-f")
    status = await wait_status(custom, KIND, "warm-f", contract.Phase.SUCCEEDED)
    assert [s["current"] for s in status["stages"]] == ["c1b"]
    assert len(seen.primes) == 2
    assert stage_flags(runs(control)[-1])[-1] == StageArgs.FRESH_FLAG


async def test_a_new_controller_resumes_between_stages_without_copying_one_again(
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    controllers: Callable[[], Awaitable[Controller]],
    control: Path,
    seen: Seen,
) -> None:
    first = await controllers()
    claim = await make_warm(core, custom, "warm-r")
    uid = claim.metadata.uid
    await set_checkpoints(custom, "warm-r", [full("c1")], False)
    await wait_stages(custom, "warm-r", ["c1"])
    await wait_reason(custom, "warm-r", PAUSED)
    await first.stop()

    # No controller runs: a checkpoint comes, then (with the next controller) its pod.
    await set_checkpoints(custom, "warm-r", [full("c1"), incremental("c2", "c1")], False)
    (control / "c2.hold").touch()
    second = await controllers()
    await wait_running(core, uid, "c2")
    await second.stop()

    # Stage 2 ends while no controller runs; the third records it once and goes on.
    (control / "c2.hold").unlink()

    async def succeeded() -> bool:
        pod = await core.read_namespaced_pod(contract.populator_pod(uid), NS)
        return bool(pod.status.phase == "Succeeded")

    await eventually(succeeded, within=30, what="stage 2's pod succeeded")
    await controllers()
    await wait_stages(custom, "warm-r", ["c1", "c2"])
    await set_checkpoints(
        custom, "warm-r", [full("c1"), incremental("c2", "c1"), incremental("c3", "c2")], True
    )
    pvc = await wait_populated(core, "warm-r")
    status = await wait_status(custom, KIND, "warm-r", contract.Phase.SUCCEEDED)
    assert [s["current"] for s in status["stages"]] == ["c1", "c2", "c3"]
    await wait_clean(core)
    assert [runs_of(control, c) for c in ("c1", "c2", "c3")] == [1, 1, 1]
    assert len(seen.pods) == 3
    assert len(seen.primes) == 1
    volume = await core.read_persistent_volume(pvc.spec.volume_name)
    assert (volume_dir(volume) / "stages.log").read_text().split() == ["c1", "c2", "c3"]


async def test_a_failed_stage_pod_is_recreated_and_the_prime_keeps_the_earlier_stages(
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    controller: Controller,
    control: Path,
    seen: Seen,
) -> None:
    claim = await make_warm(core, custom, "warm-x")
    uid = claim.metadata.uid
    await set_checkpoints(custom, "warm-x", [full("c1")], False)
    await wait_stages(custom, "warm-x", ["c1"])

    (control / "c2.fail").write_text("2")
    await set_checkpoints(custom, "warm-x", [full("c1"), incremental("c2", "c1")], False)
    status = await wait_stages(custom, "warm-x", ["c1", "c2"], within=60)
    assert runs_of(control, "c2") == 3
    assert "failed on purpose" in status["log"]
    warnings = [r for t, r, _ in await claim_events(core, "warm-x") if t == "Warning"]
    assert warnings.count(contract.Reason.POD_FAILED) == 2
    # The prime made for stage 1 is the one stage 2 finished on.
    assert len(seen.primes) == 1
    assert all(p["metadata"].get("deletionTimestamp") is None for p in seen.primes.values())

    # The next stage starts with the whole recreation allowance.
    async def reset() -> bool:
        pvc = await core.read_namespaced_persistent_volume_claim("warm-x", NS)
        return bool((pvc.metadata.annotations or {}).get(contract.RECREATIONS) == "0")

    await eventually(reset, what="the recreation count reset for the next stage")

    await set_checkpoints(
        custom, "warm-x", [full("c1"), incremental("c2", "c1"), incremental("c3", "c2")], True
    )
    pvc = await wait_populated(core, "warm-x")
    await wait_status(custom, KIND, "warm-x", contract.Phase.SUCCEEDED)
    volume = await core.read_persistent_volume(pvc.spec.volume_name)
    assert (volume_dir(volume) / "stages.log").read_text().split() == ["c1", "c2", "c3"]
    assert len(seen.primes) == 1
    assert uid


async def test_a_stage_failing_past_the_limit_waits_for_a_new_checkpoint(
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    controller: Controller,
    control: Path,
    seen: Seen,
) -> None:
    """Its backup may be what failed: the CR does not fail, the prime keeps stage 1, and the
    checkpoint the orchestrator appends next (a new backup) is copied."""
    await make_warm(core, custom, "warm-f")
    await set_checkpoints(custom, "warm-f", [full("c1")], False)
    await wait_stages(custom, "warm-f", ["c1"])
    (control / "c2.fail").write_text("99")
    await set_checkpoints(custom, "warm-f", [full("c1"), incremental("c2", "c1")], False)
    status = await wait_reason(custom, "warm-f", STAGE_FAILED, within=60)
    assert status["phase"] == contract.Phase.RUNNING
    assert status["failedCheckpoint"] == "c2"
    assert "failed on purpose" in status["log"]
    await sleep_a_little()
    tries = runs_of(control, "c2")
    assert tries == 1 + 3  # the first pod and its recreations, then no more
    await set_checkpoints(
        custom,
        "warm-f",
        [full("c1"), incremental("c2", "c1"), incremental("c3", "c1")],
        True,
    )
    pvc = await wait_populated(core, "warm-f")
    await wait_status(custom, KIND, "warm-f", contract.Phase.SUCCEEDED)
    volume = await core.read_persistent_volume(pvc.spec.volume_name)
    assert (volume_dir(volume) / "stages.log").read_text().split() == ["c1", "c3"]
    assert runs_of(control, "c2") == tries
    assert len(seen.primes) == 1


async def test_a_stale_status_resets_its_stages(
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    controller: Controller,
    seen: Seen,
) -> None:
    """An earlier claim's stages say nothing about this claim's volume."""
    await make_secret(core, "src", {"user": "u", "password": "p"})
    spec = {"engineUrl": "https://engine.invalid", "engineSecretName": "src", "diskId": "d-1"}
    await make_populator(custom, KIND, "warm-s", spec_with_stages(spec, [full("c1")], False))
    old = {"current": "c1", "backupId": "backup-c1", "mode": "full", "bytes": 1}
    await custom.patch_namespaced_custom_object_status(
        contract.GROUP,
        contract.VERSION,
        NS,
        PLURALS[KIND],
        "warm-s",
        {"status": {"phase": "Running", "claimUID": "earlier", "stages": [old]}},
        _content_type="application/merge-patch+json",
    )
    claim = await make_claim(
        core, "warm-s", KIND, disk_ids("stale"), mode="Filesystem", storage_class="standard"
    )
    # c1 is copied again, for this claim, and recorded once.
    status = await wait_reason(custom, "warm-s", PAUSED)
    assert status[contract.CLAIM_UID] == claim.metadata.uid
    assert [(s["current"], s["bytes"]) for s in status["stages"]] == [("c1", 0)]
    assert len(seen.pods) == 1


async def test_an_incremental_stage_without_its_base_is_not_copied(
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    controller: Controller,
    control: Path,
    seen: Seen,
) -> None:
    """Copied onto a volume lacking its base, a stage would leave it neither disk."""
    await make_warm(core, custom, "warm-o")
    await set_checkpoints(custom, "warm-o", [incremental("c2", "c1")], False)
    status = await wait_reason(custom, "warm-o", OUT_OF_ORDER)
    assert "incremental from c1" in status["message"]
    await sleep_a_little()
    assert not seen.pods
    # The orchestrator puts it right: a full first stage.
    await set_checkpoints(custom, "warm-o", [full("c2")], False)
    await wait_stages(custom, "warm-o", ["c2"])
    assert runs_of(control, "c2") == 1
