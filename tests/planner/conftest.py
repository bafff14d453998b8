"""The planner as a real process, validating against the inventory service (a real process
too) that collects a simulated oVirt engine and a simulated cluster; real NATS and
PostgreSQL. One set per module; tests make maps and plans of their own (unique names).

The engine holds one VM per validation case (names say which); the cluster has a target
namespace with a Multus network, a class per storage case (dynamic, no-provisioner, an
unknown CSI driver whose StorageProfile is empty, a small one with a capacity limit), and
a VM and a PVC whose names a plan may collide with.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from kubernetes_asyncio import client

from shared import envelope as env
from shared.devservices import DevServices
from sim.kube.cluster import Cluster
from sim.kube.config import HOSTPATH_PROVISIONER, ClusterConfig, default_storage_classes
from sim.ovirt import scenario
from sim.ovirt.engine import Engine
from tests.conftest import TOKEN, kube_client
from tests.inventory.conftest import PREFIX, api, inventory, kube, unique, wait_phase
from tools.processes import ServiceProcess

__all__ = ["inventory", "kube"]  # fixtures, imported for this package's tests

NAMESPACE = "migrated"
SMALL_BYTES = 2 << 30  # the capacity of class "small"
GIB = 1 << 30


def _disk(name: str, size: str = "1GiB", **extra: Any) -> dict[str, Any]:
    return {"name": name, "size": size, "allocated": 0.1, **extra}


SCENARIO: dict[str, Any] = {
    "networks": [{"name": "prod", "vlan": 100}, {"name": "dmz", "vlan": 200}],
    "vms": [
        {
            "name": "web-1",
            "firmware": "uefi",
            "cpu": {"sockets": 2, "cores": 2, "threads": 1},
            "memory": "2GiB",
            "nics": [{"network": "prod", "model": "virtio"}],
            "disks": [
                _disk("web-1-root", bootable=True, interface="virtio"),
                _disk("web-1-data", "2GiB", format="cow", bootable=False),
            ],
        },
        {"name": "db-1", "status": "down", "nics": [{"network": "prod"}], "disks": [_disk("db")]},
        {"name": "Weird Name_#1", "nics": [{"network": "dmz"}], "disks": [_disk("weird")]},
        {"name": "locked-1", "nics": [{"network": "prod"}], "disks": [_disk("l", status="locked")]},
        {
            "name": "two-pods",
            "nics": [{"network": "prod"}, {"network": "prod"}],
            "disks": [_disk("tp")],
        },
        {"name": "big-1", "nics": [{"network": "prod"}], "disks": [_disk("big", "3GiB")]},
        {"name": "mgmt-1", "nics": [{"network": "ovirtmgmt"}], "disks": [_disk("m")]},
        {"name": "taken-vm", "nics": [{"network": "prod"}], "disks": [_disk("t")]},
        {"name": "rerun-a", "nics": [{"network": "prod"}], "disks": [_disk("ra")]},
        {"name": "rerun-b", "nics": [{"network": "prod"}], "disks": [_disk("rb")]},
        # A cluster whose nodes share a quorum disk (refused: SharedDiskUnsupported).
        {
            "name": "node-1",
            "nics": [{"network": "prod"}],
            "disks": [_disk("node-1-root"), _disk("quorum", "16MiB", shareable=True)],
        },
        *(
            {
                "name": n,
                "nics": [{"network": "prod"}],
                "disks": [_disk(f"{n}-root"), {"attach": "quorum", "bootable": False}],
            }
            for n in ("node-2", "node-3")
        ),
    ],
}


def storage_classes() -> list[dict[str, Any]]:
    return [
        *default_storage_classes(),
        {
            "metadata": {"name": "unknown-csi"},
            "provisioner": "csi.example.com",
            "volumeBindingMode": "Immediate",
        },
        {
            "metadata": {"name": "small"},
            "provisioner": HOSTPATH_PROVISIONER,
            "volumeBindingMode": "Immediate",
        },
    ]


@pytest.fixture(scope="module")
async def engine(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Engine]:
    inv, faults = scenario.from_dict(SCENARIO)
    async with Engine(inv, faults, tmp_path_factory.mktemp("engine")) as e:
        yield e


@pytest.fixture(scope="module")
async def kube_sim(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    base = tmp_path_factory.mktemp("kube")
    cfg = ClusterConfig(
        storage_root=base / "volumes",
        storage_classes=storage_classes(),
        storage_capacity={"small": SMALL_BYTES},
        namespaces=("hoist", NAMESPACE),
    )
    async with Cluster(cfg) as sim:
        await _populate(sim)
        yield sim


async def _populate(sim: Cluster) -> None:
    """What a plan may collide with or name: a Multus network, a VM and a PVC."""
    async with kube_client(sim) as api_client:
        custom = client.CustomObjectsApi(api_client)
        await custom.create_namespaced_custom_object(
            "k8s.cni.cncf.io", "v1", NAMESPACE, "network-attachment-definitions",
            {
                "apiVersion": "k8s.cni.cncf.io/v1",
                "kind": "NetworkAttachmentDefinition",
                "metadata": {"name": "blue", "namespace": NAMESPACE},
                "spec": {"config": '{"cniVersion": "0.3.1", "type": "bridge", "name": "blue"}'},
            },
        )  # fmt: skip
        await custom.create_namespaced_custom_object(
            "kubevirt.io", "v1", NAMESPACE, "virtualmachines",
            {
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachine",
                "metadata": {"name": "taken-vm", "namespace": NAMESPACE},
                "spec": {"runStrategy": "Halted",
                         "template": {"spec": {"domain": {"devices": {}}}}},
            },
        )  # fmt: skip
        await client.CoreV1Api(api_client).create_namespaced_persistent_volume_claim(
            NAMESPACE,
            {
                "metadata": {"name": "taken-pvc"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                    "storageClassName": "standard",
                },
            },
        )


@pytest.fixture(scope="module")
async def providers(inventory: ServiceProcess, engine: Engine, kube_sim: Cluster) -> dict[str, str]:
    """An oVirt source and the simulated cluster as target, both Ready; name -> id."""
    out: dict[str, str] = {}
    body = {
        "name": unique("engine"),
        "type": "ovirt",
        "url": engine.api_url,
        "credentials": {"user": "admin@internal", "password": "secret"},
        "tls": {"fingerprint": engine.cert.fingerprint},
    }
    r = await api(inventory, "POST", "/providers", json=body)
    assert r.status_code == 201, r.text
    out["ovirt"] = r.json()["id"]
    host = {"name": unique("host"), "type": "kubevirt"}
    r = await api(inventory, "POST", "/providers", json=host)
    assert r.status_code == 201, r.text
    out["cluster"] = r.json()["id"]
    for pid in out.values():
        await wait_phase(inventory, pid, "Ready", within=60)
    return out


def planner_process(
    servers: DevServices,
    database_url: str,
    inventory: ServiceProcess,
    logs: Path,
    **env: str,
) -> ServiceProcess:
    return ServiceProcess(
        "planner",
        {
            "HOIST_NATS_URL": servers.nats_url,
            "HOIST_NATS_PREFIX": PREFIX,
            "HOIST_DATABASE_URL": database_url,
            "HOIST_PLANNER_INVENTORY_URL": inventory.url,
            "HOIST_PLANNER_REVALIDATE_SECONDS": "1",
            "HOIST_PLANNER_PROGRESS_FLUSH_SECONDS": "0.2",
            "HOIST_LOG_FORMAT": "json",
            **env,
        },
        logs,
        TOKEN,
    )


@pytest.fixture(scope="module")
async def planner(
    servers: DevServices,
    database_url: str,
    inventory: ServiceProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[ServiceProcess]:
    proc = planner_process(servers, database_url, inventory, tmp_path_factory.mktemp("planner"))
    await proc.start()
    await proc.wait_ready(60)
    yield proc
    await proc.terminate()


async def vm_ids(inventory: ServiceProcess, provider: str) -> dict[str, str]:
    """Source VM name -> id."""
    r = await api(inventory, "GET", f"/providers/{provider}/vms", params={"limit": 1000})
    return {v["name"]: v["id"] for v in r.json()["items"]}


def network_map_body(providers: dict[str, str], **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": unique("net"),
        "sourceProvider": providers["ovirt"],
        "targetProvider": providers["cluster"],
        "entries": [
            {"source": {"name": "prod"}, "destination": {"type": "pod"}},
            {"source": {"name": "dmz"}, "destination": {"type": "multus", "name": "blue"}},
        ],
    }
    body.update(over)
    return body


def storage_map_body(
    providers: dict[str, str], cls: str = "standard", **over: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": unique("store"),
        "sourceProvider": providers["ovirt"],
        "targetProvider": providers["cluster"],
        "entries": [{"source": {"name": "data"}, "destination": {"storageClass": cls}}],
    }
    body.update(over)
    return body


async def make_maps(
    planner: ServiceProcess, providers: dict[str, str], cls: str = "standard"
) -> tuple[str, str]:
    r = await api(planner, "POST", "/networkmaps", json=network_map_body(providers))
    assert r.status_code == 201, r.text
    s = await api(planner, "POST", "/storagemaps", json=storage_map_body(providers, cls))
    assert s.status_code == 201, s.text
    return r.json()["id"], s.json()["id"]


def plan_body(
    providers: dict[str, str], maps: tuple[str, str], vms: list[dict[str, Any]], **over: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": unique("plan"),
        "sourceProvider": providers["ovirt"],
        "targetProvider": providers["cluster"],
        "targetNamespace": NAMESPACE,
        "networkMap": maps[0],
        "storageMap": maps[1],
        "vms": vms,
    }
    body.update(over)
    return body


async def post_and_capture(
    planner: ServiceProcess,
    path: str,
    subject: str,
    body: dict[str, Any] | None = None,
    count: Callable[[dict[str, Any]], int] = lambda _: 1,
) -> list[dict[str, Any]]:
    """POST to the planner and return the envelopes it published on ``subject`` (relative
    to the installation prefix; JetStream publishes reach core subscribers too): as many as
    ``count(first envelope)`` says."""
    nc = await nats.connect(planner.env["HOIST_NATS_URL"])
    got: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def on_msg(msg: Any) -> None:
        got.append(json.loads(msg.data))
        if len(got) >= count(got[0]):
            done.set()

    await nc.subscribe(f"{PREFIX}.{subject}", cb=on_msg)
    try:
        r = await api(planner, "POST", path, json=body)
        assert r.status_code == 202, r.text
        await asyncio.wait_for(done.wait(), 30)
        return got
    finally:
        await nc.drain()


async def start_and_capture(planner: ServiceProcess, plan_id: str) -> dict[str, Any]:
    """Start a plan and return the frozen plan its ``plan.started`` event carried: all its
    parts' VMs in one list, in order, and the number of parts under ``parts``."""
    envelopes = await post_and_capture(
        planner, f"/plans/{plan_id}/start", f"plan.{plan_id}.started",
        count=lambda first: int(first["data"]["parts"]),
    )  # fmt: skip
    parts = sorted(
        (env.decode(json.dumps(e).encode()).data.model_dump(mode="json") for e in envelopes),
        key=lambda d: d["part"],
    )
    assert [d["part"] for d in parts] == list(range(1, parts[0]["parts"] + 1))
    whole: dict[str, Any] = dict(parts[0])
    whole["vms"] = [vm for d in parts for vm in d["vms"]]
    assert len(whole["vms"]) == (whole["vms_total"] or len(whole["vms"]))
    return whole
