"""A remote target cluster, end to end through the services' APIs: the stack's second
simulated cluster (its admin applied ``shared.remotetarget.manifest()``) registered as a
``kubevirt`` provider with a token of Hoist's least-privilege ServiceAccount there. One
plan goes into it and one into Hoist's own cluster at the same time; while the remote
copy runs its API server fails every request for a while, then its token is rotated (the
old one revoked) and the provider updated, and both plans finish byte for byte, the
remote VM and its disk in the remote cluster only."""

from __future__ import annotations

import asyncio
from typing import Any

import yaml
from kubernetes_asyncio import client

from shared import populator as contract
from shared import remotetarget
from tests.conftest import eventually, kube_client
from tests.e2e.conftest import NAMESPACE, create_plan, start, svc, vm_view, wait_migration
from tests.e2e.test_ovirt import source_vm, transfer_task
from tests.inventory.conftest import api, unique, wait_phase
from tests.populators.ovirt.conftest import assert_same_image
from tools.stack import Stack


async def _remote_provider(stack: Stack) -> str:
    inventory = svc(stack, "inventory")
    creds = stack.remote_credentials()
    # A kubeconfig that points at a file of Hoist's machine is refused, precisely.
    assert stack.remote is not None
    kubeconfig = stack.remote.kubeconfig_dict(creds["token"])
    kubeconfig["users"][0]["user"] = {"tokenFile": "/var/run/secrets/token"}

    def body(**given: Any) -> dict[str, Any]:
        return {"name": unique("east"), "type": "kubevirt", "url": creds["url"], **given}

    kubeconfig_text = yaml.safe_dump(kubeconfig)
    r = await api(
        inventory, "POST", "/providers", json=body(credentials={"kubeconfig": kubeconfig_text})
    )
    assert r.status_code == 422, r.text
    assert "tokenFile" in r.text
    r = await api(
        inventory,
        "POST",
        "/providers",
        json=body(credentials={"token": creds["token"]}, tls={"caCert": creds["cacert"]}),
    )
    assert r.status_code == 201, r.text
    pid: str = r.json()["id"]
    provider = await wait_phase(inventory, pid, "Ready", within=90)
    installed = [c for c in provider["status"]["conditions"] if c["type"] == "PopulatorsInstalled"]
    assert [c["status"] for c in installed] == [True], provider["status"]["conditions"]
    return pid


async def _maps(stack: Stack, source: str, target: str) -> tuple[str, str]:
    planner = svc(stack, "planner")
    common = {"sourceProvider": source, "targetProvider": target}
    rows = {
        "/networkmaps": [{"source": {"name": "prod"}, "destination": {"type": "pod"}}],
        "/storagemaps": [
            {
                "source": {"name": "data"},
                "destination": {"storageClass": "standard-wffc", "volumeMode": "Block"},
            }
        ],
    }
    ids = []
    for path, entries in rows.items():
        body = {**common, "name": unique("remote"), "entries": entries}
        r = await api(planner, "POST", path, json=body)
        assert r.status_code == 201, r.text
        assert r.json()["problems"] == [], r.json()
        ids.append(r.json()["id"])
    return ids[0], ids[1]


async def test_a_remote_cluster_takes_a_plan_through_an_outage_and_a_token_rotation(
    stack: Stack, providers: dict[str, str], maps: dict[str, tuple[str, str]]
) -> None:
    engine, remote = stack.engine, stack.remote
    assert engine is not None
    assert remote is not None
    remote_id = await _remote_provider(stack)
    remote_maps = {"ovirt": await _maps(stack, providers["ovirt"], remote_id)}
    east = source_vm(engine, "east")
    slow = east.disk_attachments[0].disk_id
    plan_east = await create_plan(
        stack, {**providers, "cluster": remote_id}, remote_maps, "ovirt", ["east"]
    )
    plan_west = await create_plan(stack, providers, maps, "ovirt", ["west"])
    run_east = await start(stack, plan_east)
    run_west = await start(stack, plan_west)

    # The remote disk's populator pod runs there, and its progress comes back (through
    # the remote API server's pod proxy) while it copies.
    async def copying() -> bool:
        task = transfer_task(await vm_view(stack, plan_east, east.id), slow)
        return task is not None and 0 < task["progress"]["completed"] < task["progress"]["total"]

    await eventually(copying, within=120, every=0.2, what="the remote disk seen mid-copy")
    async with kube_client(remote) as admin:
        pods = await client.CoreV1Api(admin).list_namespaced_pod(NAMESPACE)
        assert any(p.metadata.name.startswith("populate-") for p in pods.items)

        # The remote API server away for a while, then back.
        remote.faults.update({"http_error_rate": 1.0, "http_error_code": 503})
        await asyncio.sleep(3)
        remote.faults.update({"http_error_rate": 0.0})

        # Rotation while it runs: the old token revoked (its account deleted and made
        # again), the provider updated with a new one.
        await client.CoreV1Api(admin).delete_namespaced_service_account(
            remotetarget.DEFAULT_NAME, remotetarget.DEFAULT_NAMESPACE
        )
        fresh = stack.remote_credentials()
        r = await api(
            svc(stack, "inventory"),
            "PATCH",
            f"/providers/{remote_id}",
            json={"credentials": {"token": fresh["token"]}},
        )
        assert r.status_code == 200, r.text

        # The controller service reconnects to that cluster on the new token.
        def reconnected() -> bool:
            running = f"remote cluster {remote_id}: populator controller running"
            return stack.controller.logs().count(running) >= 2

        await eventually(reconnected, within=30, what="the remote controller on the new token")
        assert f"remote cluster {remote_id}: its credentials changed" in stack.controller.logs()
        task = transfer_task(await vm_view(stack, plan_east, east.id), slow)
        assert task is not None
        assert task["state"] != "Completed"  # still in flight

        ended = await wait_migration(stack, plan_east, run_east["id"])
        assert ended["phase"] == "Succeeded", ended
        view = await vm_view(stack, plan_east, east.id)
        vm = await client.CustomObjectsApi(admin).get_namespaced_custom_object(
            "kubevirt.io", "v1", NAMESPACE, "virtualmachines", view["targetName"]
        )
        assert vm["metadata"]["name"] == view["targetName"]
        claims = await client.CoreV1Api(admin).list_namespaced_persistent_volume_claim(
            NAMESPACE, label_selector=f"{contract.DISK}={slow}"
        )
        [claim] = claims.items
        volume = await client.CoreV1Api(admin).read_persistent_volume(claim.spec.volume_name)
    await assert_same_image(engine, engine.inv.disks[slow], _backing(volume))
    async with stack.kube() as local:
        here = await client.CoreV1Api(local).list_namespaced_persistent_volume_claim(
            NAMESPACE, label_selector=f"{contract.DISK}={slow}"
        )
        assert here.items == []  # the remote disk never touched Hoist's cluster
    ended = await wait_migration(stack, plan_west, run_west["id"])
    assert ended["phase"] == "Succeeded", ended


def _backing(volume: Any) -> Any:
    from pathlib import Path

    return Path((volume.spec.host_path or volume.spec.local).path)
