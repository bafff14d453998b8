"""Whole OpenStack pipelines through the real orchestrator, controller, cluster and cloud.

An image-backed server (its root disk snapshotted by Nova into Glance, its data volume
through a Cinder snapshot, a volume and an upload) and a boot-from-volume server (every
volume that way) are migrated; the populator reads the images from the real Glance. The
disks must arrive byte for byte, and no ``hoist-*`` snapshot, volume or image may be left.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from shared import payloads as p
from shared.devservices import DevServices
from sim.openstack import scenario as sc
from sim.openstack.cloud import Cloud
from sim.openstack.state import Server
from tests.orchestrator.pipelines import (
    NAMESPACE,
    ControllerProcess,
    labelled,
    plan_of,
    publisher,
    put_secret,
    start_plan,
    target_file,
    wait_vm,
)
from tools.processes import ServiceProcess

MiB = 1 << 20


@pytest.fixture(scope="module")
def made(cloud: Cloud) -> dict[str, Server]:
    """Servers of this module alone, added to the session's cloud."""
    specs = [
        sc.Server(
            name="osp-web",
            flavor="m1.small",
            networks=["private"],
            root=sc.Disk(size_mib=8, data_mib=3),
            volumes=[sc.Volume(name="osp-web-data", size_mib=6, data_mib=2)],
        ),
        sc.Server(
            name="osp-bfv",
            flavor="m1.small",
            networks=["private"],
            boot="volume",
            status="SHUTOFF",
            root=sc.Disk(size_mib=8, data_mib=3),
            volumes=[sc.Volume(name="osp-bfv-logs", size_mib=4, data_mib=1)],
        ),
    ]
    return {s.name: cloud.add_server(s) for s in specs}


@pytest.fixture(scope="module")
async def source(cloud: Cloud, kube: client.ApiClient) -> p.ProviderRef:
    ref = p.ProviderRef(
        id=str(uuid.uuid4()),
        type=p.ProviderType.OPENSTACK,
        url=cloud.auth_url,
        secret=p.ResourceRef(namespace="hoist", name=f"cloud-{uuid.uuid4().hex[:6]}"),
    )
    await put_secret(kube, ref.secret.name, cloud.credentials())
    return ref


def source_file(cloud: Cloud, server: Server, disk_id: str) -> Path:
    if disk_id == f"{server.id}-root":
        assert server.root_path is not None
        return server.root_path
    return Path(cloud.state.volumes[disk_id].path)


def planned(cloud: Cloud, server: Server, *, storage_class: str, mode: str) -> p.PlannedVm:
    """Disks as the planner names them: an image-backed root disk is ``<id>-root`` from
    ``glance``, volumes go by their id (boot volume first)."""
    target = f"{server.name}-{uuid.uuid4().hex[:4]}"
    ids = [f"{server.id}-root"] if server.boot == "image" else []
    ids += list(server.volume_ids)
    disks = [
        p.PlannedDisk(
            disk_id=disk_id,
            name=disk_id[:8],
            size_bytes=source_file(cloud, server, disk_id).stat().st_size,
            source_storage="glance" if disk_id.endswith("-root") else "standard",
            boot=i == 0,
            pvc_name=f"{target}-disk-{i}",
            storage_class=storage_class,
            volume_mode=mode,
            access_mode="ReadWriteOnce",
        )
        for i, disk_id in enumerate(ids)
    ]
    detail: dict[str, object] = {
        "sourceType": "openstack",
        "cpu": {"sockets": 2, "cores": 1, "threads": 1},
        "memoryBytes": 2048 * MiB,
        "firmware": "bios",
        "secureBoot": False,
        "machineType": None,
        "osType": None,
        "description": "",
    }
    return p.PlannedVm(
        vm_id=server.id,
        name=server.name,
        target_name=target,
        disks=disks,
        source_power_state=server.status,
        detail=detail,
    )


def sha256(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        data = f.read(size)
    digest.update(data + bytes(size - len(data)))
    return digest.hexdigest()


def leftovers(cloud: Cloud) -> list[str]:
    conn = cloud.connection()
    try:
        names = [s.name for s in cloud.state.snapshots.values()]
        names += [v.name for v in cloud.state.volumes.values()]
        names += [i.name for i in conn.image.images()]
    finally:
        conn.close()
    return [n for n in names if n and n.startswith("hoist-")]


async def test_image_backed_and_boot_from_volume_servers_migrate(
    cloud: Cloud,
    made: dict[str, Server],
    kube: client.ApiClient,
    source: p.ProviderRef,
    running: tuple[ServiceProcess, ControllerProcess],
    servers: DevServices,
    prefix: str,
) -> None:
    svc, _ = running
    web = planned(cloud, made["osp-web"], storage_class="standard", mode="Filesystem")
    bfv = planned(cloud, made["osp-bfv"], storage_class="standard-wffc", mode="Block")
    # One VM at a time: the second server's snapshots, volumes and images (storage on the
    # source) are not made before the first VM is through.
    plan = plan_of(source, [web, bfv], max_vms_in_flight=1)
    async with publisher(servers, prefix) as bus:
        await start_plan(bus, plan)
    times: dict[str, dict[str, dict[str, str]]] = {}
    for vm in (web, bfv):
        state = await wait_vm(svc, plan, vm.vm_id, within=240)
        assert state["phase"] == "Succeeded", state
        steps = [s["name"] for s in state["pipeline"] if s["state"] == "Completed"]
        assert "ConvertOpenstackSnapshot" in steps
        times[vm.vm_id] = {s["name"]: s for s in state["pipeline"]}
    first, second = (times[vm.vm_id] for vm in (web, bfv))
    done = datetime.fromisoformat(first["VirtualMachineCreation"]["completedAt"])
    for step in ("Initialize", "ConvertOpenstackSnapshot"):
        assert datetime.fromisoformat(second[step]["startedAt"]) >= done, step
    for vm, server in ((web, made["osp-web"]), (bfv, made["osp-bfv"])):
        for d in vm.disks:
            copy = await target_file(kube, NAMESPACE, d.pvc_name)
            src = source_file(cloud, server, d.disk_id)
            assert await asyncio.to_thread(sha256, copy, d.size_bytes) == await asyncio.to_thread(
                sha256, src, d.size_bytes
            ), d
    assert cloud.state.servers[web.vm_id].status == "SHUTOFF"  # powered off for the copy
    custom = client.CustomObjectsApi(kube)
    vm_web = await custom.get_namespaced_custom_object(
        "kubevirt.io", "v1", NAMESPACE, "virtualmachines", web.target_name
    )
    assert vm_web["spec"]["runStrategy"] == "Always"
    vm_bfv = await custom.get_namespaced_custom_object(
        "kubevirt.io", "v1", NAMESPACE, "virtualmachines", bfv.target_name
    )
    assert vm_bfv["spec"]["runStrategy"] == "Halted"
    assert leftovers(cloud) == []
    for vm in (web, bfv):
        left = await labelled(kube, f"hoist.io/vm={vm.vm_id}")
        assert left["openstackvolumepopulators"] == []
        assert left["secret"] == []
        assert sorted(left["pvc"]) == sorted(d.pvc_name for d in vm.disks)
