"""What the controller asks of the API, without a cluster: the status patches it sends and
the watches it keeps (the end-to-end tests run both against the simulated cluster)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from services.controller import status
from services.controller.queue import WorkQueue
from services.controller.watching import Index, watchers
from shared import populator as contract
from shared.kube import POD, POPULATORS, PVC, Kube, Obj, Resource

UID = "claim-uid-1"


class FakeKube(Kube):
    """Records status patches; answers each with the CR as patched (or ``refuse``)."""

    def __init__(self, refuse: int | None = None) -> None:
        self.patches: list[tuple[Resource, str, Any, str | None, str]] = []
        self.refuse = refuse

    async def patch(
        self,
        res: Resource,
        name: str,
        body: Obj | list[Obj],
        namespace: str | None = None,
        *,
        content_type: str = "",
        subresource: str = "",
    ) -> Obj:
        self.patches.append((res, name, body, namespace, subresource))
        if self.refuse is not None:
            raise ApiException(status=self.refuse)
        assert isinstance(body, dict)
        return {"metadata": {"name": name, "namespace": namespace}, **body}


def cr(**current: Any) -> Obj:
    return {
        "kind": contract.OVIRT.name,
        "metadata": {"name": "vm-1-disk-0", "namespace": "target"},
        "status": current,
    }


async def test_status_writes_only_what_changed_to_the_status_subresource() -> None:
    kube = FakeKube()
    populator = cr(phase="Pending", progress="0", claimUID=UID)
    updated = await status.write(
        kube, populator, UID, phase=contract.Phase.RUNNING, progress="0", pod="populate-x"
    )
    assert kube.patches == [
        (
            POPULATORS[contract.OVIRT.name],
            "vm-1-disk-0",
            {"status": {"phase": "Running", "pod": "populate-x"}},
            "target",
            "status",
        )
    ]
    assert updated["kind"] == contract.OVIRT.name


async def test_status_writes_nothing_when_nothing_changed() -> None:
    kube = FakeKube()
    populator = cr(phase="Running", reason="Copying", claimUID=UID)
    assert await status.write(kube, populator, UID, phase="Running", reason="Copying") is (
        populator
    )
    assert kube.patches == []


async def test_status_compares_with_what_is_written_and_claims_the_status() -> None:
    kube = FakeKube()
    # progress written as a number is not "42": it is rewritten; claimUID is added.
    await status.write(kube, cr(progress=42), UID, progress="42")
    assert kube.patches[0][2] == {"status": {"progress": "42", contract.CLAIM_UID: UID}}


async def test_status_keeps_the_end_of_a_long_log() -> None:
    kube = FakeKube()
    text = "".join(f"line {n}\n" for n in range(5000))
    await status.write(kube, cr(claimUID=UID), UID, log=text)
    written = kube.patches[0][2]["status"]["log"]
    assert written == contract.tail(text)
    assert len(written.encode()) <= contract.Status.LOG_LIMIT


async def test_status_of_a_deleted_cr_is_not_an_error_and_others_are() -> None:
    populator = cr(claimUID=UID)
    assert await status.write(FakeKube(refuse=404), populator, UID, phase="Running") is populator
    with pytest.raises(ApiException):
        await status.write(FakeKube(refuse=500), populator, UID, phase="Running")


async def test_status_refuses_a_field_the_contract_does_not_have() -> None:
    with pytest.raises(TypeError):
        await status.write(FakeKube(), cr(), UID, phase="Running", progres="1")


async def test_the_controller_watches_claims_its_pods_and_both_cr_kinds() -> None:
    found = watchers(FakeKube(), Index(WorkQueue()))
    assert [(w.name, w.res, w.selector, w.item_kind) for w in found] == [
        ("claims", PVC, None, ""),
        ("pods", POD, contract.CONTROLLER_SELECTOR, ""),
        *((k.plural, POPULATORS[k.name], None, k.name) for k in contract.KINDS),
    ]
    assert all(not w.optional and w.watch_seconds == 300 for w in found)
    assert all(w.backoff == (1.0, 30.0) for w in found)


def test_populator_resources_are_the_registered_crds() -> None:
    paths = {f"/apis/{contract.GROUP}/{contract.VERSION}/{k.plural}" for k in contract.KINDS}
    assert {res.path() for res in POPULATORS.values()} == paths
    crd_names = {m["metadata"]["name"] for m in contract.crds()}
    assert {f"{res.plural}.{res.group}" for res in POPULATORS.values()} == crd_names


async def test_a_stage_is_appended_once_guarded_by_the_resource_version() -> None:
    kube = FakeKube()
    first = {"current": "c1", "backupId": "b1", "mode": "full", "bytes": 5}
    populator = cr(claimUID=UID, stages=[first])
    populator["metadata"]["resourceVersion"] = "41"
    stage = contract.Stage("c2", "b2", "incremental", 7, "t0", "t1", "populate-x")
    await status.add_stage(kube, populator, UID, stage)
    assert kube.patches[0][2] == {
        "status": {"stages": [first, stage.to_dict()], contract.CLAIM_UID: UID},
        "metadata": {"resourceVersion": "41"},
    }
    again = cr(claimUID=UID, stages=[first, stage.to_dict()])
    assert await status.add_stage(kube, again, UID, stage) is again
    assert len(kube.patches) == 1
