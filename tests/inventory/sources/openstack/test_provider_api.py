"""An OpenStack provider through the inventory service's API: created with Forklift's Secret
keys and a CA bundle, its servers browsable with their concerns, a change followed."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client

from sim.openstack.cloud import Cloud
from tests.conftest import eventually
from tests.inventory.conftest import api, secrets_of, unique, wait_phase
from tests.inventory.sources.openstack.conftest import server_id
from tools.processes import ServiceProcess


def body(cloud: Cloud, name: str, **creds: str) -> dict[str, Any]:
    given = cloud.credentials()
    ca = given.pop("cacert")
    return {
        "name": name,
        "type": "openstack",
        "url": cloud.auth_url,
        "credentials": {**given, **creds},
        "tls": {"caCert": ca},
    }


async def test_openstack_provider_through_the_api(
    inventory: ServiceProcess, cloud: Cloud, kube: client.ApiClient
) -> None:
    wrong = await api(inventory, "POST", "/providers", json=body(cloud, unique("os"), password="x"))
    assert wrong.status_code == 422
    assert wrong.json()["detail"][0]["type"] == "AuthRefused"
    no_scope = body(cloud, unique("os"))
    del no_scope["credentials"]["projectName"]
    r = await api(inventory, "POST", "/providers", json=no_scope)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][:2] == ["body", "credentials"]

    created = await api(inventory, "POST", "/providers", json=body(cloud, unique("os")))
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    assert created.json()["tls"]["mode"] == "ca"
    assert cloud.scenario.password not in created.text
    stored = (await secrets_of(kube))[created.json()["secret"]["name"]]
    assert stored["username"] == cloud.scenario.user
    assert stored["cacert"].startswith("-----BEGIN CERTIFICATE-----")

    ready = await wait_phase(inventory, pid, "Ready", within=60)
    live = [s for s in cloud.state.servers.values() if s.deleted_at is None]
    assert ready["status"]["counts"]["vm"] == len(live)
    vms = (await api(inventory, "GET", f"/providers/{pid}/vms", params={"detail": 1})).json()
    names = {v["name"] for v in vms["items"]}
    assert {"web-1", "db-1", "lonely"} <= names
    lonely = next(v for v in vms["items"] if v["name"] == "lonely")
    assert lonely["concerns"], "a server without networks has a concern"
    for collection in ("flavors", "volumes", "networks", "subnets", "projects", "images"):
        r = await api(inventory, "GET", f"/providers/{pid}/{collection}")
        assert r.status_code == 200, collection
        # this scenario uploads no Glance image: that collection is empty, but there
        assert r.json()["total"] > 0 or collection == "images", collection

    # A server in ERROR shows as such, with a Critical concern, after a refresh.
    sid = server_id(cloud, "api-error")
    cloud.state.set_server_status(sid, "ERROR")

    async def errored() -> bool:
        one = (await api(inventory, "GET", f"/providers/{pid}/vms/{sid}")).json()
        return bool(one["status"] == "ERROR")

    await eventually(errored, within=30, what="the server's ERROR status in the inventory")
    critical = await api(inventory, "GET", f"/providers/{pid}/vms", params={"concern": "Critical"})
    assert sid in {v["id"] for v in critical.json()["items"]}
    assert (await api(inventory, "DELETE", f"/providers/{pid}")).status_code == 204
