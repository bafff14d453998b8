"""A VM migrated onto statically provisioned local volumes, end to end: the administrator
made the volumes (``local-static``: ``kubernetes.io/no-provisioner``, node affinity), the
planner gives each disk one, the populator controller pins, fills and hands each over, and
the VM's claims hold the disks byte for byte on the volumes chosen (the smallest that fit,
never the decoy too small for either)."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client

from shared import populator as contract
from tests.conftest import eventually
from tests.controller.test_static import local_volume
from tests.e2e.conftest import NAMESPACE, start, svc, vms_of, wait_migration
from tests.e2e.test_ovirt import assert_migrated, claim_of, source_vm
from tests.inventory.conftest import api, unique
from tools.stack import Stack


async def test_a_vm_migrates_onto_static_local_volumes_byte_exact(
    stack: Stack, providers: dict[str, str]
) -> None:
    engine = stack.engine
    assert engine is not None
    vm = source_vm(engine, "on-static")
    sizes = {"pv-static-decoy": "4Mi", "pv-static-12": "16Mi", "pv-static-8": "12Mi"}
    async with stack.kube() as kube:
        core = client.CoreV1Api(kube)
        for name, size in sizes.items():
            root = stack.spec.workdir / "static-volumes"
            await core.create_persistent_volume(local_volume(root, name, size, "node-2"))
    planner = svc(stack, "planner")
    common = {"sourceProvider": providers["ovirt"], "targetProvider": providers["cluster"]}
    r = await api(planner, "POST", "/networkmaps", json={**common, "name": unique("net"),
        "entries": [{"source": {"name": "prod"}, "destination": {"type": "pod"}}]})  # fmt: skip
    network = r.json()["id"]
    storage_map: dict[str, Any] = {}

    async def map_ready() -> bool:
        # The modes come from the volumes once the inventory has seen them.
        r = await api(planner, "POST", "/storagemaps", json={**common, "name": unique("st"),
            "entries": [{"source": {"name": "data"},
                         "destination": {"storageClass": "local-static"}}]})  # fmt: skip
        storage_map.update(r.json())
        return bool(r.json()["problems"] == [])

    await eventually(map_ready, within=60, what="a storage map onto local-static")
    body = {
        **common,
        "name": unique("static-plan"),
        "targetNamespace": NAMESPACE,
        "networkMap": network,
        "storageMap": storage_map["id"],
        "vms": [{"name": "on-static"}],
    }
    r = await api(planner, "POST", "/plans", json=body)
    assert r.status_code == 201, r.text
    plan = r.json()
    assert plan["phase"] == "Ready", plan["problems"]
    migration = await start(stack, plan)
    ended = await wait_migration(stack, plan, migration["id"])
    assert ended["phase"] == "Succeeded", ended
    views = await vms_of(stack, plan)
    await assert_migrated(stack, vm.id, views["on-static"]["targetName"])
    chosen = {}
    async with stack.kube() as kube:
        core = client.CoreV1Api(kube)
        for att in vm.disk_attachments:
            disk = engine.inv.disks[att.disk_id]
            pvc = await core.read_namespaced_persistent_volume_claim(
                await claim_of(stack, vm.id, disk.id), NAMESPACE
            )
            pv = await core.read_persistent_volume(pvc.spec.volume_name)
            assert pv.spec.claim_ref.uid == pvc.metadata.uid
            assert contract.POPULATED_FROM in pv.metadata.annotations
            chosen[disk.name] = pv.metadata.name
        decoy = await core.read_persistent_volume("pv-static-decoy")
    assert chosen == {"static-root": "pv-static-12", "static-data": "pv-static-8"}
    assert decoy.status.phase == "Available"
    assert decoy.spec.claim_ref is None
