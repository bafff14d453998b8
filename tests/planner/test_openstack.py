"""An OpenStack source through the planner: image-backed and boot-from-volume servers,
Glance and volume types in the storage map, Neutron networks in the network map."""

from __future__ import annotations

from typing import Any

import pytest

from shared.sizing import GIB
from sim.openstack.cloud import Cloud
from tests.inventory.conftest import api, unique, wait_phase
from tests.planner.conftest import NAMESPACE, start_and_capture
from tests.planner.test_plans import codes
from tools.processes import ServiceProcess


@pytest.fixture(scope="module")
async def openstack(
    inventory: ServiceProcess, cloud: Cloud, providers: dict[str, str]
) -> dict[str, str]:
    given = cloud.credentials()
    ca = given.pop("cacert")
    body = {
        "name": unique("cloud"),
        "type": "openstack",
        "url": cloud.auth_url,
        "credentials": given,
        "tls": {"caCert": ca},
    }
    r = await api(inventory, "POST", "/providers", json=body)
    assert r.status_code == 201, r.text
    await wait_phase(inventory, r.json()["id"], "Ready", within=60)
    return {"openstack": r.json()["id"], "cluster": providers["cluster"]}


async def _maps(planner: ServiceProcess, p: dict[str, str], storage: list[Any]) -> tuple[str, str]:
    common = {"sourceProvider": p["openstack"], "targetProvider": p["cluster"]}
    net = {
        **common,
        "name": unique("osnet"),
        "entries": [
            {"source": {"name": "private"}, "destination": {"type": "pod"}},
            {"source": {"name": "storage"}, "destination": {"type": "multus", "name": "blue"}},
        ],
    }
    r = await api(planner, "POST", "/networkmaps", json=net)
    assert r.status_code == 201, r.text
    assert r.json()["problems"] == []
    s = await api(planner, "POST", "/storagemaps",
                  json={**common, "name": unique("osstore"), "entries": storage})  # fmt: skip
    assert s.status_code == 201, s.text
    assert s.json()["problems"] == []
    return r.json()["id"], s.json()["id"]


def _plan(p: dict[str, str], maps: tuple[str, str], vms: list[Any]) -> dict[str, Any]:
    return {
        "name": unique("osplan"),
        "sourceProvider": p["openstack"],
        "targetProvider": p["cluster"],
        "targetNamespace": NAMESPACE,
        "networkMap": maps[0],
        "storageMap": maps[1],
        "vms": vms,
    }


async def test_image_and_volume_backed_servers(
    planner: ServiceProcess, openstack: dict[str, str]
) -> None:
    storage = [
        {"source": {"type": "glance"}, "destination": {"storageClass": "standard"}},
        {"source": {"name": "standard"}, "destination": {"storageClass": "standard",
                                                         "volumeMode": "Filesystem"}},
        {"source": {"name": "ssd"}, "destination": {"storageClass": "standard-wffc"}},
    ]  # fmt: skip
    maps = await _maps(planner, openstack, storage)
    r = await api(planner, "POST", "/plans", json=_plan(openstack, maps, [
        {"name": "web-1"}, {"name": "db-1"}]))  # fmt: skip
    assert r.status_code == 201, r.text
    plan = r.json()
    assert plan["phase"] == "Ready", plan["problems"]
    frozen = await start_and_capture(planner, plan["id"])
    assert frozen["source"]["type"] == "openstack"
    web, db = frozen["vms"]
    root, data = web["disks"]
    # The image-backed root disk: the flavor's size, from Glance, boots first.
    assert root["disk_id"] == f"{web['vm_id']}-root"
    assert (root["source_storage"], root["boot"], root["size_bytes"]) == ("glance", True, 20 * GIB)
    assert (data["source_storage"], data["boot"]) == ("standard", False)
    assert data["volume_mode"] == "Filesystem"
    assert web["detail"]["memoryBytes"] == 2048 << 20
    # m1.small: 2 vCPUs, hw:cpu_cores=2 (the flavor's extra spec, through the inventory)
    assert web["detail"]["cpu"] == {"sockets": 1, "cores": 2, "threads": 1}
    # Boot from volume: the boot volume first in boot order; NICs on two networks.
    boots = [d["boot"] for d in db["disks"]]
    assert boots.count(True) == 1
    assert {d["source_storage"] for d in db["disks"]} == {"standard", "ssd"}
    assert {n["target"] for n in db["nics"]} == {"pod", f"{NAMESPACE}/blue"}
    assert db["source_power_state"] == "off"


async def test_unmapped_glance_and_volume_types(
    planner: ServiceProcess, openstack: dict[str, str]
) -> None:
    only_ssd = [{"source": {"name": "ssd"}, "destination": {"storageClass": "standard"}}]
    maps = await _maps(planner, openstack, only_ssd)
    r = await api(planner, "POST", "/plans", json=_plan(openstack, maps, [
        {"name": "web-1"}, {"name": "db-1"}]))  # fmt: skip
    found = codes(r.json())
    assert ("vms[0].disks[0]", "StorageNotMapped") in found  # the Glance root disk
    assert ("vms[0].disks[1]", "StorageNotMapped") in found  # a "standard" volume
    assert r.json()["phase"] == "NotReady"


async def test_an_openstack_plan_cannot_go_warm(
    planner: ServiceProcess, openstack: dict[str, str]
) -> None:
    storage = [
        {"source": {"type": "glance"}, "destination": {"storageClass": "standard"}},
        {"source": {"name": "standard"}, "destination": {"storageClass": "standard"}},
        {"source": {"name": "ssd"}, "destination": {"storageClass": "standard"}},
    ]
    maps = await _maps(planner, openstack, storage)
    vms = [{"name": "web-1", "targetName": unique("warm")}]
    body = {**_plan(openstack, maps, vms), "migrationType": "warm"}
    r = await api(planner, "POST", "/plans", json=body)
    assert r.status_code == 201, r.text
    assert codes(r.json()) == {("migrationType", "WarmSourceUnsupported")}
    assert "only oVirt sources can migrate warm" in r.json()["problems"][0]["message"]
    assert r.json()["phase"] == "NotReady"
