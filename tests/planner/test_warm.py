"""Which plans may go warm, validated against an inventory held in memory (the simulated
engine has no incremental-backup disks, so the accepted case and each reason are shown
here one by one; tests/planner/test_plans.py shows the disks' problem through the real
services), and the precopy detail of a warm step, which must never go back."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from services.planner import validating, warm
from services.planner.projecting import step_detail
from shared import payloads as p

GIB = 1 << 30
Obj = dict[str, Any]

ENGINE: Obj = {
    "id": "src",
    "name": "engine",
    "type": "ovirt",
    "url": "https://engine/ovirt-engine/api",
    "secret": {"namespace": "hoist", "name": "engine"},
    "tls": {},
    "status": {"phase": "Ready", "facts": {"version": "4.5.7", "apiVersion": {"major": 4,
                                                                              "minor": 5}}},
}  # fmt: skip
CLUSTER: Obj = {
    "id": "tgt",
    "name": "cluster",
    "type": "kubevirt",
    "url": "",
    "secret": {"namespace": "hoist", "name": "cluster"},
    "status": {"phase": "Ready"},
}


def _disk(did: str, backup: str | None, fmt: str = "cow") -> Obj:
    return {"id": did, "name": did, "provisioned_size": GIB, "format": fmt, "backup": backup,
            "storage_domain": "sd1", "bootable": did.endswith("root")}  # fmt: skip


def _vm(vid: str, *disks: Obj) -> Obj:
    nic = {"id": f"{vid}-nic", "name": "nic1", "mac": "56:6f:00:00:00:01", "network": "n1"}
    return {"id": vid, "name": vid, "concerns": [],
            "data": {"status": "up", "nics": [nic], "disks": list(disks)}}  # fmt: skip


class Inventory:
    """What validation reads of the inventory, from dicts (``InventoryClient``'s calls)."""

    def __init__(self, source: Obj, vms: list[Obj]) -> None:
        self.providers = {"src": source, "tgt": CLUSTER}
        profile = {"claimPropertySets": [{"volumeMode": "Filesystem",
                                          "accessModes": ["ReadWriteOnce"]}]}  # fmt: skip
        self.collections: dict[tuple[str, str], list[Obj]] = {
            ("src", "vms"): vms,
            ("src", "networks"): [{"id": "n1", "name": "prod", "parent": ""}],
            ("src", "storagedomains"): [{"id": "sd1", "name": "data", "parent": ""}],
            ("src", "volumetypes"): [{"id": "sd1", "name": "data", "parent": ""}],
            ("tgt", "namespaces"): [{"id": "migrated", "name": "migrated", "parent": ""}],
            ("tgt", "storageclasses"): [{"id": "standard", "name": "standard", "parent": "",
                                         "data": {"provisioner": "csi.example.com"}}],
            ("tgt", "storageprofiles"): [{"id": "standard", "name": "standard",
                                          "parent": "standard", "data": profile}],
        }  # fmt: skip

    async def provider(self, ref: str) -> Obj | None:
        return self.providers.get(ref)

    async def list(self, provider_id: str, collection: str, **filters: str) -> list[Obj]:
        found = self.collections.get((provider_id, collection), [])
        parent = filters.get("parent")
        return [o for o in found if parent is None or o.get("parent") == parent]

    async def objects(
        self, provider_id: str, collection: str, ids: Any, **_: Any
    ) -> dict[str, Obj]:
        have = {o["id"]: o for o in await self.list(provider_id, collection)}
        return {i: have[i] for i in ids if i in have}


def _plan(vms: list[str], migration_type: str = "warm") -> validating.PlanInput:
    def one_map(entries: list[Obj]) -> Obj:
        return {"name": "m", "source_provider": "src", "target_provider": "tgt", "entries": entries}

    return validating.PlanInput(
        id="plan-1", name="plan-1", source_provider="src", target_provider="tgt",
        target_namespace="migrated", migration_type=migration_type, transfer_network=None,
        naming={}, vms=[{"id": v} for v in vms],
        network_map=one_map([{"source": {"name": "prod"}, "destination": {"type": "pod"}}]),
        storage_map=one_map([{"source": {"name": "data"},
                              "destination": {"storageClass": "standard"}}]),
    )  # fmt: skip


async def _validate(source: Obj, vms: list[Obj], migration_type: str = "warm") -> Any:
    inv = Inventory(source, vms)
    return await validating.validate(inv, _plan([v["id"] for v in vms], migration_type))  # type: ignore[arg-type]


def _codes(res: Any) -> set[tuple[str, str, str]]:
    return {(x.path, x.code, x.severity) for x in res.problems}


async def test_a_warm_plan_of_incremental_disks_on_ovirt_45_is_ready() -> None:
    vm = _vm("web", _disk("web-root", "incremental"), _disk("web-data", "incremental", "raw"))
    res = await _validate(ENGINE, [vm])
    assert res.problems == []
    assert res.ok
    assert [d.disk_id for d in res.vms[0].disks] == ["web-root", "web-data"]


async def test_each_disk_without_incremental_backup_is_named() -> None:
    vms = [
        _vm("web", _disk("web-root", "incremental"), _disk("web-data", "none")),
        _vm("db", _disk("db-root", None)),
    ]
    res = await _validate(ENGINE, vms)
    assert _codes(res) == {
        ("vms[0].disks[1]", "DiskIncrementalBackupDisabled", "error"),
        ("vms[1].disks[0]", "DiskIncrementalBackupDisabled", "error"),
    }
    by_path = {x.path: x for x in res.problems}
    first = by_path["vms[0].disks[1]"]
    assert first.vm == "web"
    assert "disk 'web-data' does not have incremental backup enabled (backup: none)" in (
        first.message
    )
    assert "enable incremental backup on the disk" in first.message
    assert "(backup: none)" in by_path["vms[1].disks[0]"].message
    assert not res.ok
    # The same VMs migrate cold without a word about backup.
    assert (await _validate(ENGINE, vms, "cold")).problems == []


async def test_an_engine_older_than_44_cannot_go_warm() -> None:
    old = copy.deepcopy(ENGINE)
    old["status"]["facts"] = {"version": "4.3.10.4-1.el7", "apiVersion": {"major": 4, "minor": 3}}
    res = await _validate(old, [_vm("web", _disk("web-root", "incremental"))])
    assert _codes(res) == {("sourceProvider", "WarmEngineTooOld", "error")}
    message = res.problems[0].message
    assert "runs oVirt 4.3.10.4-1.el7; warm migration needs oVirt 4.4 or newer" in message


async def test_an_unknown_engine_version_is_a_warning() -> None:
    unknown = copy.deepcopy(ENGINE)
    unknown["status"]["facts"] = {}
    res = await _validate(unknown, [_vm("web", _disk("web-root", "incremental"))])
    assert _codes(res) == {("sourceProvider", "WarmEngineVersionUnknown", "warning")}
    assert res.ok


async def test_an_openstack_source_cannot_go_warm() -> None:
    cloud = {**copy.deepcopy(ENGINE), "type": "openstack", "name": "cloud"}
    server = {"id": "srv", "name": "srv", "concerns": [],
              "data": {"powerState": "running", "nics": [{"portId": "p1", "networkId": "n1"}],
                       "volumes": [{"id": "v1", "sizeGiB": 1, "volumeType": "data",
                                    "bootIndex": 0}]}}  # fmt: skip
    res = await _validate(cloud, [server])
    assert _codes(res) == {("migrationType", "WarmSourceUnsupported", "error")}
    assert "provider 'cloud' is openstack: only oVirt sources can migrate warm" in (
        res.problems[0].message
    )
    assert (await _validate(cloud, [server], "cold")).problems == []


def test_the_engine_version_from_numbers_or_text() -> None:
    assert warm.engine_version({"apiVersion": {"major": 4, "minor": 4}}) == (4, 4)
    assert warm.engine_version({"version": "4.5.7-1.el8"}) == (4, 5)
    assert warm.engine_version({"version": "unknown"}) is None
    assert warm.engine_version(None) is None


def _event(precopy: Obj, state: p.StepState = p.StepState.RUNNING, attempt: int = 1) -> Any:
    return p.VmStepChanged(
        plan_id="plan", migration_id="m", vm_id="vm", step=p.Step.WARM_PRECOPY, state=state,
        attempt=attempt, detail={"precopy": precopy},
    )  # fmt: skip


def test_a_precopy_detail_never_goes_back_to_an_earlier_precopy() -> None:
    at = datetime.now(UTC)
    third = {"number": 3, "bytes": 120 << 20, "nextAt": "2030-01-01T15:04:00+00:00",
             "running": False}  # fmt: skip
    stored = {"state": "Running", "attempt": 1, "detail": {"precopy": third}}
    second = {"number": 2, "bytes": 5, "nextAt": None, "running": False}
    assert step_detail(stored, "Running", _event(second), at) == {"precopy": third}
    # The next precopy, running, replaces it; a new attempt starts afresh.
    fourth = {"number": 4, "bytes": 0, "nextAt": None, "running": True}
    assert step_detail(stored, "Running", _event(fourth), at) == {"precopy": fourth}
    retried = step_detail(stored, "Running", _event(second, attempt=2), at)
    assert retried == {"precopy": second}
    # Within one precopy, its end is newer than its run.
    running3 = {**third, "running": True, "bytes": 1}
    assert step_detail(stored, "Running", _event(running3), at) == {"precopy": third}
