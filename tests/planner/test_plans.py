"""Maps and plans through the planner's API, validated by the real inventory service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

from shared.sizing import claim_bytes
from sim.kube.cluster import Cluster
from tests.conftest import eventually, kube_client
from tests.controller.test_static import local_volume
from tests.inventory.conftest import api, unique
from tests.planner.conftest import (
    GIB,
    NAMESPACE,
    make_maps,
    network_map_body,
    plan_body,
    start_and_capture,
    storage_map_body,
    vm_ids,
)
from tools.processes import ServiceProcess


def has_loc(body: dict[str, Any], loc: list[Any]) -> bool:
    """A 422 names the field ``loc`` (or a field beneath it)."""
    want = [str(x) for x in loc]
    return any([str(x) for x in d["loc"][: len(want)]] == want for d in body["detail"])


def codes(body: dict[str, Any]) -> set[tuple[str, str]]:
    return {(p["path"], p["code"]) for p in body["problems"]}


# --- maps -----------------------------------------------------------------------------------


async def test_network_map_lifecycle(planner: ServiceProcess, providers: dict[str, str]) -> None:
    body = network_map_body(providers)
    r = await api(planner, "POST", "/networkmaps", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["problems"] == []
    assert created["sourceProvider"] == providers["ovirt"]
    assert (await api(planner, "POST", "/networkmaps", json=body)).status_code == 409
    by_name = await api(planner, "GET", f"/networkmaps/{body['name']}")
    assert by_name.json()["id"] == created["id"]
    etag = by_name.headers["ETag"]
    listed = await api(planner, "GET", "/networkmaps", params={"provider": providers["ovirt"]})
    assert created["id"] in [m["id"] for m in listed.json()["items"]]

    change = {"entries": [{"source": {"name": "prod"}, "destination": {"type": "ignored"}}]}
    r = await api(planner, "PATCH", f"/networkmaps/{created['id']}", json=change,
                  headers={"If-Match": etag})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["entries"][0]["destination"] == {"type": "ignored"}
    stale = await api(planner, "PATCH", f"/networkmaps/{created['id']}", json=change,
                      headers={"If-Match": etag})  # fmt: skip
    assert stale.status_code == 412
    assert (await api(planner, "DELETE", f"/networkmaps/{created['id']}")).status_code == 204
    assert (await api(planner, "GET", f"/networkmaps/{created['id']}")).status_code == 404


async def test_maps_refuse_bad_input(planner: ServiceProcess, providers: dict[str, str]) -> None:
    cases: list[tuple[str, dict[str, Any], list[Any]]] = [
        ("/networkmaps", network_map_body(providers, sourceProvider="no-such"),
         ["sourceProvider"]),
        ("/networkmaps", network_map_body(providers, sourceProvider=providers["cluster"]),
         ["sourceProvider"]),
        ("/networkmaps", network_map_body(providers, entries=[
            {"source": {"name": "prod"}, "destination": {"type": "multus"}}]),
         ["body", "entries", 0, "destination"]),
        ("/networkmaps", network_map_body(providers, entries=[
            {"source": {"name": "prod"}, "destination": {"type": "pod"}},
            {"source": {"name": "prod"}, "destination": {"type": "ignored"}}]),
         ["body", "entries"]),
        ("/networkmaps", network_map_body(providers, name="Not A Label"), ["body", "name"]),
        ("/storagemaps", storage_map_body(providers, entries=[
            {"source": {"name": "data", "id": "x"}, "destination": {"storageClass": "a"}}]),
         ["body", "entries", 0, "source"]),
        ("/storagemaps", storage_map_body(providers, entries=[
            {"source": {"name": "data"}, "destination": {"storageClass": "a",
                                                        "volumeMode": "Raw"}}]),
         ["body", "entries", 0, "destination", "volumeMode"]),
        ("/storagemaps", storage_map_body(providers, surprise=1), ["body", "surprise"]),
    ]  # fmt: skip
    for path, body, loc in cases:
        r = await api(planner, "POST", path, json=body)
        assert r.status_code == 422, (body, r.text)
        assert has_loc(r.json(), loc), (loc, r.json())


async def test_map_problems_come_from_the_inventory(
    planner: ServiceProcess, providers: dict[str, str]
) -> None:
    net = network_map_body(providers, entries=[
        {"source": {"name": "no-such-net"}, "destination": {"type": "pod"}},
        {"source": {"name": "dmz"}, "destination": {"type": "multus", "namespace": NAMESPACE,
                                                    "name": "no-such-nad"}},
    ])  # fmt: skip
    r = await api(planner, "POST", "/networkmaps", json=net)
    assert r.status_code == 201, r.text
    assert codes(r.json()) == {
        ("networkMap.entries[0].source", "SourceNotFound"),
        ("networkMap.entries[1].destination", "NetworkAttachmentDefinitionNotFound"),
    }
    cases = {
        # Static classes: no Available volume in this cluster to take the modes from.
        "local-static": "StaticVolumesMissing",
        "": "StaticVolumesMissing",
        "no-such-class": "StorageClassNotFound",
        "unknown-csi": "StorageProfileEmpty",
    }
    for cls, code in cases.items():
        r = await api(planner, "POST", "/storagemaps", json=storage_map_body(providers, cls))
        assert r.status_code == 201, r.text
        assert codes(r.json()) == {("storageMap.entries[0].destination", code)}, cls
    # Modes given in the map need no profile.
    given = storage_map_body(providers, entries=[{"source": {"name": "data"}, "destination": {
        "storageClass": "unknown-csi", "volumeMode": "Filesystem",
        "accessMode": "ReadWriteOnce"}}])  # fmt: skip
    assert (await api(planner, "POST", "/storagemaps", json=given)).json()["problems"] == []
    glance = storage_map_body(
        providers,
        entries=[{"source": {"type": "glance"}, "destination": {"storageClass": "standard"}}],
    )
    r = await api(planner, "POST", "/storagemaps", json=glance)
    assert codes(r.json()) == {("storageMap.entries[0].source", "SourceInvalid")}


async def test_static_classes_count_their_available_volumes(
    planner: ServiceProcess, providers: dict[str, str], kube_sim: Cluster, tmp_path: Path
) -> None:
    """A static class gives each disk one Available volume that fits, the smallest: two
    disks, two volumes, one too small: the disk left without one is a precise problem."""
    async with kube_client(kube_sim) as api_client:
        core = client.CoreV1Api(api_client)
        for name, size in (("pv-static-small", "512Mi"), ("pv-static-fit", "2Gi")):
            await core.create_persistent_volume(local_volume(tmp_path, name, size, "node-1"))
    maps: list[str] = []

    async def volumes_seen() -> bool:
        r = await api(
            planner, "POST", "/storagemaps", json=storage_map_body(providers, "local-static")
        )
        maps.append(r.json()["id"])
        return bool(r.json()["problems"] == [])  # the modes come from the volumes once seen

    await eventually(volumes_seen, what="the static volumes in the inventory")
    r = await api(planner, "POST", "/networkmaps", json=network_map_body(providers))
    body = plan_body(providers, (r.json()["id"], maps[-1]), [{"name": "db-1"}, {"name": "big-1"}])
    r = await api(planner, "POST", "/plans", json=body)
    assert r.status_code == 201, r.text
    problems = [p for p in r.json()["problems"] if p["code"] == "StaticVolumeMissing"]
    assert len(problems) == 1, r.json()["problems"]
    need = claim_bytes(3 * GIB, "Filesystem")
    assert problems[0]["message"] == (
        f"disk 'big' needs a {need} byte claim: no Available PersistentVolume of class "
        f'"local-static" with >= {need} bytes, volumeMode Filesystem, accessMode '
        "ReadWriteOnce is left for it: the class has 2 Available, 1 not taken by the "
        f"plan's other disks (bytes: {512 << 20}); create one, or map the disk to a class "
        "with a dynamic provisioner"
    )


async def test_a_map_in_use_cannot_be_deleted(
    planner: ServiceProcess, inventory: ServiceProcess, providers: dict[str, str]
) -> None:
    maps = await make_maps(planner, providers)
    r = await api(planner, "POST", "/plans", json=plan_body(providers, maps, [{"name": "db-1"}]))
    assert r.status_code == 201, r.text
    refused = await api(planner, "DELETE", f"/storagemaps/{maps[1]}")
    assert refused.status_code == 409
    assert r.json()["name"] in refused.text
    assert (await api(planner, "DELETE", f"/plans/{r.json()['id']}")).status_code == 204
    assert (await api(planner, "DELETE", f"/storagemaps/{maps[1]}")).status_code == 204


# --- plans ----------------------------------------------------------------------------------


async def test_plan_crud_and_names(
    planner: ServiceProcess, inventory: ServiceProcess, providers: dict[str, str]
) -> None:
    maps = await make_maps(planner, providers)
    ids = await vm_ids(inventory, providers["ovirt"])
    body = plan_body(
        providers, maps,
        [{"name": "web-1"}, {"id": ids["Weird Name_#1"]}, {"name": "db-1", "targetName": "db"}],
        naming={"vm": "{name}", "pvc": "{vm}-{disk}"},
        limits={"maxDisksInFlight": 3},
    )  # fmt: skip
    r = await api(planner, "POST", "/plans", json=body)
    assert r.status_code == 201, r.text
    plan = r.json()
    assert plan["phase"] == "Ready", plan["problems"]
    assert plan["ready"] is True
    assert plan["limits"] == {
        "maxDisksInFlight": 3,
        "maxDisksInFlightPerSource": 20,
        "maxVmsInFlight": 20,
    }
    assert (plan["cutover"], plan["cutoverRevision"]) == (None, 0)
    assert [v["id"] for v in plan["vms"]] == [ids["web-1"], ids["Weird Name_#1"], ids["db-1"]]
    assert [v["name"] for v in plan["vms"]] == ["web-1", "Weird Name_#1", "db-1"]
    assert (await api(planner, "POST", "/plans", json=body)).status_code == 409

    got = await api(planner, "GET", f"/plans/{body['name']}")
    assert got.json()["id"] == plan["id"]
    cached = await api(planner, "GET", f"/plans/{plan['id']}",
                       headers={"If-None-Match": got.headers["ETag"]})  # fmt: skip
    assert cached.status_code == 304
    r = await api(planner, "PATCH", f"/plans/{plan['id']}", json={"description": "x"},
                  headers={"If-Match": got.headers["ETag"]})  # fmt: skip
    assert r.status_code == 200
    assert r.json()["description"] == "x"
    r = await api(planner, "PATCH", f"/plans/{plan['id']}", json={"description": "y"},
                  headers={"If-Match": got.headers["ETag"]})  # fmt: skip
    assert r.status_code == 412

    listed = await api(planner, "GET", "/plans", params={"provider": providers["ovirt"]})
    assert plan["id"] in [p["id"] for p in listed.json()["items"]]
    archived = await api(planner, "POST", f"/plans/{plan['id']}/archive")
    assert archived.json()["archived"] is True
    assert (await api(planner, "PATCH", f"/plans/{plan['id']}", json={"description": "z"})
            ).status_code == 409  # fmt: skip
    assert (await api(planner, "POST", f"/plans/{plan['id']}/start")).status_code == 409
    listed = await api(planner, "GET", "/plans", params={"provider": providers["ovirt"]})
    assert plan["id"] not in [p["id"] for p in listed.json()["items"]]
    unarchived = await api(planner, "POST", f"/plans/{plan['id']}/unarchive")
    assert unarchived.json()["archived"] is False
    assert (await api(planner, "DELETE", f"/plans/{plan['id']}")).status_code == 204
    assert (await api(planner, "GET", f"/plans/{plan['id']}")).status_code == 404


async def test_plans_refuse_bad_input(planner: ServiceProcess, providers: dict[str, str]) -> None:
    maps = await make_maps(planner, providers)
    base = plan_body(providers, maps, [{"name": "db-1"}])
    cases: list[tuple[dict[str, Any], list[Any]]] = [
        ({**base, "vms": None}, ["body"]),
        ({**base, "vmSelector": {"search": "x"}}, ["body"]),
        ({**base, "naming": {"vm": "{nope}"}}, ["body", "naming", "vm"]),
        ({**base, "naming": {"pvc": "fixed"}}, ["body", "naming", "pvc"]),
        ({**base, "naming": {"vm": "{name!r}"}}, ["body", "naming", "vm"]),
        ({**base, "targetNamespace": "Bad_NS"}, ["body", "targetNamespace"]),
        ({**base, "migrationType": "hot"}, ["body", "migrationType"]),
        ({**base, "limits": {"maxDisksInFlight": 0}}, ["body", "limits", "maxDisksInFlight"]),
        ({**base, "vms": [{"name": "db-1", "targetName": "Not OK"}]},
         ["body", "vms", 0, "targetName"]),
        ({**base, "networkMap": "no-such-map"}, ["body", "networkMap"]),
        ({**base, "targetProvider": providers["ovirt"]}, ["targetProvider"]),
        ({**base, "vmSelector": {"names": ["nothing-*"]}, "vms": None}, ["body", "vmSelector"]),
    ]  # fmt: skip
    for body, loc in cases:
        r = await api(planner, "POST", "/plans", json=body)
        assert r.status_code == 422, (body, r.text)
        assert has_loc(r.json(), loc), (loc, r.json())
    for method, path in (("GET", "/plans/nope"), ("POST", "/plans/nope/start"),
                         ("POST", "/plans/nope/cancel"), ("DELETE", "/plans/nope")):  # fmt: skip
        assert (await api(planner, method, path)).status_code == 404, path


async def test_selector_resolves_once(planner: ServiceProcess, providers: dict[str, str]) -> None:
    maps = await make_maps(planner, providers)
    body = plan_body(providers, maps, [])
    body.pop("vms")
    body["vmSelector"] = {"names": ["rerun-*", "web-?"], "excludeConcerns": "Critical"}
    r = await api(planner, "POST", "/plans", json=body)
    assert r.status_code == 201, r.text
    assert sorted(v["name"] for v in r.json()["vms"]) == ["rerun-a", "rerun-b", "web-1"]
    assert r.json()["vmSelector"]["names"] == ["rerun-*", "web-?"]


async def test_every_validation_problem_at_once(
    planner: ServiceProcess, inventory: ServiceProcess, providers: dict[str, str]
) -> None:
    maps = await make_maps(planner, providers)
    ids = await vm_ids(inventory, providers["ovirt"])
    vms = [{"name": "locked-1"}, {"name": "two-pods"}, {"name": "mgmt-1"}, {"name": "taken-vm"},
           {"id": "no-such-vm"}, {"name": "no-such-name"}, {"id": ids["db-1"]},
           {"id": ids["db-1"]}, {"name": "web-1", "targetName": "same"},
           {"name": "rerun-a", "targetName": "same"}]  # fmt: skip
    r = await api(planner, "POST", "/plans", json=plan_body(
        providers, maps, vms, migrationType="warm", transferNetwork="no-such-nad"))  # fmt: skip
    assert r.status_code == 201, r.text
    plan = r.json()
    assert plan["phase"] == "NotReady"
    found = codes(plan)
    expected = {
        # The simulated engine's disks have no incremental backup: each is named.
        ("vms[0].disks[0]", "DiskIncrementalBackupDisabled"),
        ("vms[8].disks[0]", "DiskIncrementalBackupDisabled"),
        ("vms[8].disks[1]", "DiskIncrementalBackupDisabled"),
        ("transferNetwork", "NetworkAttachmentDefinitionNotFound"),
        ("vms[0]", "CriticalConcern"),
        ("vms[1].nics", "MultiplePodNetworks"),
        ("vms[2].nics[0]", "NetworkNotMapped"),
        ("vms[3].targetName", "NameCollision"),
        ("vms[4]", "VmNotFound"),
        ("vms[5]", "VmNotFound"),
        ("vms[7]", "VmDuplicate"),
        ("vms[9].targetName", "TargetNameDuplicate"),
    }
    assert expected <= found, expected - found
    for p in plan["problems"]:
        assert p["message"]
        assert p["severity"] in ("error", "warning")
    start = await api(planner, "POST", f"/plans/{plan['id']}/start")
    assert start.status_code == 422
    assert expected <= {(p["path"], p["code"]) for p in start.json()["detail"]["problems"]}

    # The namespace, the class's capacity and the PVC names are checked too.
    small = await make_maps(planner, providers, cls="small")
    r = await api(planner, "POST", "/plans", json=plan_body(
        providers, small, [{"name": "big-1"}, {"name": "db-1"}], targetNamespace="nowhere",
        naming={"pvc": "taken-{diskId}"}))  # fmt: skip
    found = codes(r.json())
    assert ("targetNamespace", "NamespaceNotFound") in found
    assert ("vms[0].disks[0]", "DiskTooLarge") in found
    r = await api(planner, "POST", "/plans", json=plan_body(
        providers, maps, [{"name": "db-1"}], naming={"pvc": "taken-pvc{index}"}))  # fmt: skip
    assert codes(r.json()) == set(), r.json()["problems"]


async def test_a_shared_disk_is_refused_naming_the_vms_that_share_it(
    planner: ServiceProcess, providers: dict[str, str]
) -> None:
    """Copied once per VM, a shared disk would split into diverging copies: refused."""
    maps = await make_maps(planner, providers)
    r = await api(planner, "POST", "/plans", json=plan_body(
        providers, maps, [{"name": "node-1"}, {"name": "node-2"}, {"name": "db-1"}]))  # fmt: skip
    assert r.status_code == 201, r.text
    plan = r.json()
    assert plan["phase"] == "NotReady"
    shared = {p["path"]: p for p in plan["problems"] if p["code"] == "SharedDiskUnsupported"}
    assert set(shared) == {"vms[0].disks[1]", "vms[1].disks[1]"}
    first, second = shared["vms[0].disks[1]"], shared["vms[1].disks[1]"]
    assert first["severity"] == "error"
    assert "disk 'quorum'" in first["message"]
    assert "shared with VM(s) 'node-2', 'node-3'" in first["message"]
    assert "shared with VM(s) 'node-1', 'node-3'" in second["message"]
    assert "cannot be migrated yet" in first["message"]
    assert "Detach it" in first["message"]
    assert "migrate it separately" in first["message"]
    start = await api(planner, "POST", f"/plans/{plan['id']}/start")
    assert start.status_code == 422


async def test_names_are_valid_and_unique(
    planner: ServiceProcess, providers: dict[str, str]
) -> None:
    maps = await make_maps(planner, providers)
    body = plan_body(providers, maps, [{"name": "Weird Name_#1"}, {"name": "web-1"},
                                       {"name": "db-1"}],
                     naming={"vm": "same-{plan}", "pvc": "{vm}-{disk}"})  # fmt: skip
    r = await api(planner, "POST", "/plans", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["phase"] == "Ready", r.text
    frozen = await start_and_capture(planner, r.json()["id"])
    names = [v["target_name"] for v in frozen["vms"]]
    pvcs = [d["pvc_name"] for v in frozen["vms"] for d in v["disks"]]
    assert len(set(names)) == 3
    assert len(set(pvcs)) == len(pvcs) == 4
    for n in names + pvcs:
        assert len(n) <= 63, n
        assert n.replace("-", "").isalnum(), n
        assert n == n.lower(), n


async def test_start_publishes_the_frozen_plan(
    planner: ServiceProcess, inventory: ServiceProcess, providers: dict[str, str],
) -> None:  # fmt: skip
    maps = await make_maps(planner, providers)
    ids = await vm_ids(inventory, providers["ovirt"])
    body = plan_body(providers, maps, [{"name": "web-1"}, {"name": "Weird Name_#1"}],
                     transferNetwork="blue", targetPowerState="off")  # fmt: skip
    plan = (await api(planner, "POST", "/plans", json=body)).json()
    assert plan["phase"] == "Ready", plan["problems"]
    frozen = await start_and_capture(planner, plan["id"])
    assert frozen["plan_id"] == plan["id"]
    assert frozen["plan_name"] == body["name"]
    assert frozen["source"]["id"] == providers["ovirt"]
    assert frozen["source"]["type"] == "ovirt"
    assert frozen["source"]["secret"]["name"].startswith("hoist-provider-")
    assert frozen["target"]["type"] == "kubevirt"
    assert frozen["target_namespace"] == NAMESPACE
    assert frozen["transfer_network"] == f"{NAMESPACE}/blue"
    assert frozen["target_power_state"] == "off"
    web, weird = frozen["vms"]
    assert web["vm_id"] == ids["web-1"]
    assert web["target_name"] == "web-1"
    assert weird["target_name"].startswith("weird-name-1-")
    assert [d["size_bytes"] for d in web["disks"]] == [GIB, 2 * GIB]
    assert [d["format"] for d in web["disks"]] == ["raw", "qcow2"]
    assert [d["boot"] for d in web["disks"]] == [True, False]
    assert web["disks"][0]["bus"] == "virtio"
    assert [d["pvc_name"] for d in web["disks"]] == ["web-1-disk-0", "web-1-disk-1"]
    # From the hostpath StorageProfile: Block preferred over Filesystem.
    assert {(d["storage_class"], d["volume_mode"], d["access_mode"]) for d in web["disks"]} == {
        ("standard", "Block", "ReadWriteOnce")
    }
    assert web["nics"][0]["target"] == "pod"
    assert web["nics"][0]["mac"]
    assert weird["nics"][0]["target"] == f"{NAMESPACE}/blue"
    assert web["detail"]["firmware"] == "uefi"
    assert web["detail"]["cpu"] == {"sockets": 2, "cores": 2, "threads": 1}
    assert web["detail"]["memoryBytes"] == 2 * GIB

    got = (await api(planner, "GET", f"/plans/{plan['id']}")).json()
    assert got["phase"] == "Running"
    assert got["migrationId"] == frozen["migration_id"]
    assert (await api(planner, "POST", f"/plans/{plan['id']}/start")).status_code == 409
    assert (await api(planner, "PATCH", f"/plans/{plan['id']}", json={"description": "x"})
            ).status_code == 409  # fmt: skip
    assert (await api(planner, "DELETE", f"/plans/{plan['id']}")).status_code == 409


async def test_revalidated_when_the_inventory_changes(
    planner: ServiceProcess, providers: dict[str, str], kube: Any
) -> None:
    from kubernetes_asyncio import client

    maps = await make_maps(planner, providers)
    ns = unique("later")
    r = await api(planner, "POST", "/plans", json=plan_body(
        providers, maps, [{"name": "db-1"}], targetNamespace=ns))  # fmt: skip
    plan = r.json()
    assert ("targetNamespace", "NamespaceNotFound") in codes(plan)
    await client.CoreV1Api(kube).create_namespace({"metadata": {"name": ns}})

    seen: dict[str, Any] = {}

    async def ready() -> bool:
        seen.update((await api(planner, "GET", f"/plans/{plan['id']}")).json())
        return bool(seen["phase"] == "Ready")

    try:
        await eventually(ready, within=60, what="Ready after validating again")
    except AssertionError:
        raise AssertionError(f"still {seen['phase']}: {seen['problems']}") from None


async def test_no_request_gets_a_500(planner: ServiceProcess, providers: dict[str, str]) -> None:
    """Malformed requests of every kind are refused with a 4xx, never a server error."""
    maps = await make_maps(planner, providers)
    body = plan_body(providers, maps, [{"name": "db-1"}])
    plan = (await api(planner, "POST", "/plans", json=body)).json()
    pid = plan["id"]
    raw = {"headers": {"Content-Type": "application/json"}}
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/plans", {"content": b"{not json", **raw}),
        ("POST", "/plans", {"content": b"[]", **raw}),
        ("POST", "/plans", {"json": {"name": 7}}),
        ("POST", "/plans", {"json": {**body, "description": "nul\x00"}}),
        ("POST", "/networkmaps", {"content": b"\xff\xfe", **raw}),
        ("PATCH", f"/plans/{pid}", {"json": {"vms": [{"id": ""}]}}),
        ("PATCH", f"/plans/{pid}", {"json": {"name": "renamed"}}),
        ("PATCH", f"/plans/{pid}", {"json": {"vms": [{"id": "x"}], "vmSelector": {}}}),
        ("PATCH", f"/plans/{pid}", {"json": {}, "headers": {"If-Match": "garbage"}}),
        ("PATCH", f"/plans/{pid}", {"json": {}, "headers": {"If-Match": 'W/"nope"'}}),
        ("PATCH", f"/networkmaps/{maps[0]}", {"json": {"sourceProvider": "x"}}),
        ("PATCH", f"/storagemaps/{maps[1]}", {"json": {"entries": "no"}}),
        ("GET", "/plans", {"params": {"limit": 0}}),
        ("GET", "/plans", {"params": {"limit": "many"}}),
        ("GET", "/plans", {"params": {"phase": "Dancing"}}),
        ("GET", "/plans", {"params": {"archived": "perhaps"}}),
        ("GET", f"/plans/{pid}/vms", {"params": {"cursor": "!!!"}}),
        ("GET", f"/plans/{pid}/vms", {"params": {"limit": 100000}}),
        ("GET", f"/plans/{pid}/vms/nope", {}),
        ("GET", f"/plans/{pid}/migrations", {"params": {}}),
        ("GET", "/plans/" + "x" * 300, {}),
        ("POST", f"/plans/{pid}/cancel", {"json": {"vms": "all"}}),
        ("POST", f"/plans/{pid}/cancel", {"json": {"surprise": True}}),
        ("POST", "/plans/%00/start", {}),
        ("GET", "/plans/a%01b/vms/x%00", {}),
        ("GET", "/networkmaps/%00", {}),
        ("GET", "/plans", {"params": {"provider": "\x00", "cursor": "\x00"}}),
        ("GET", "/networkmaps", {"params": {"provider": "a\x00"}}),
        ("GET", f"/plans/{pid}/vms", {"params": {"migration": "\x00"}}),
        ("GET", "/planner/events", {"params": {"plan": "\x00"}}),
        ("DELETE", "/networkmaps/00000000-0000-0000-0000-000000000000", {}),
        ("GET", "/planner/events", {"params": {"since": "yesterday"}}),
    ]
    for method, path, kw in requests:
        r = await api(planner, method, path, **kw)
        assert 400 <= r.status_code < 500 or (r.status_code == 200 and method == "GET"), (
            method, path, kw, r.status_code, r.text)  # fmt: skip
