"""End to end: the whole of Hoist (``tools.stack``) against both sources, driven only through
the services' HTTP APIs, as a user drives it.

One stack for the package: the simulated oVirt engine (real imageio) and the session's OpenStack
cloud (real Keystone and Glance) as sources, the simulated cluster as target, the inventory,
planner, orchestrator and progress services and the populator controller as real processes
on the session's NATS (a prefix of their own) and PostgreSQL (a database of their own).
Providers and maps are registered once; each test makes and runs plans of its own VMs.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shared.devservices import DevServices
from sim.openstack import scenario as sc
from sim.openstack.cloud import Cloud
from sim.openstack.state import Server
from tests.conftest import TOKEN, create_database, drop_database, eventually
from tests.inventory.conftest import api, unique, wait_phase
from tests.orchestrator.pipelines import FINAL
from tests.orchestrator.pipelines import ovirt_disk as _disk
from tests.sim.imagefiles import MiB, make
from tools import guestimage
from tools.processes import ServiceProcess
from tools.stack import Stack, StackSpec

NAMESPACE = "migrated"


#: The engine. ``slow-*`` disks are throttled so a copy lasts long enough to be watched and
#: canceled; ``flaky-disk``'s transfers pause (the populator fails) until a test lifts it;
#: ``window-*`` wait for a cutover; ``warm-web``'s guest writes while it runs (warm).
OVIRT: dict[str, Any] = {
    "networks": [{"name": "prod", "vlan": 100}],
    "vms": [
        {
            "name": "web",
            "firmware": "uefi",
            "cpu": {"sockets": 1, "cores": 2, "threads": 1},
            "memory": "2GiB",
            "nics": [{"network": "prod", "model": "virtio"}],
            "disks": [
                _disk("web-root", "16MiB", format="cow", bootable=True, interface="virtio_scsi"),
                _disk("slow-web-data", "24MiB", interface="virtio"),
            ],
        },
        {"name": "db", "status": "down", "nics": [{"network": "prod"}], "disks": [_disk("db")]},
        {"name": "flaky", "nics": [{"network": "prod"}], "disks": [_disk("flaky-disk")]},
        {"name": "steady", "nics": [{"network": "prod"}], "disks": [_disk("steady-disk")]},
        {"name": "leak", "nics": [{"network": "prod"}], "disks": [_disk("leak-disk", "4MiB")]},
        {"name": "slow", "nics": [{"network": "prod"}], "disks": [_disk("slow-disk", "48MiB")]},
        *(
            {"name": f"window-{i}", "nics": [{"network": "prod"}], "disks": [_disk(f"win-{i}")]}
            for i in range(3)
        ),
        # Static local volumes (test_static.py): two disks, each onto a pre-made volume.
        {
            "name": "on-static",
            "status": "down",
            "nics": [{"network": "prod"}],
            "disks": [_disk("static-root", "12MiB", bootable=True), _disk("static-data")],
        },
        # test_remote.py: one plan into the remote cluster (slow enough to outlive an
        # outage and a token rotation), one into Hoist's own.
        {"name": "east", "nics": [{"network": "prod"}], "disks": [_disk("slow-east", "16MiB")]},
        {"name": "west", "nics": [{"network": "prod"}], "disks": [_disk("west-disk")]},
        # Hooks (test_hooks.py): running sources, so a pre hook sees them up.
        {"name": "hooked-a", "nics": [{"network": "prod"}], "disks": [_disk("hooked-a")]},
        {"name": "hooked-b", "nics": [{"network": "prod"}], "disks": [_disk("hooked-b")]},
        {
            "name": "warm-web",
            "nics": [{"network": "prod"}],
            "guest_writes": "256KiB",
            "disks": [
                _disk("warm-root", "16MiB", format="cow", backup="incremental", bootable=True),
                _disk("warm-data", "8MiB", format="cow", backup="incremental"),
            ],
        },
    ],
    "faults": [
        {"kind": "bandwidth", "disk": "slow-web-data", "bytes_per_second": "3MiB"},
        {"kind": "bandwidth", "disk": "slow-disk", "bytes_per_second": "2MiB"},
        {"kind": "paused_system", "disk": "flaky-disk"},
        {"kind": "bandwidth", "disk": "slow-east", "bytes_per_second": "1MiB"},
    ],
}


@pytest.fixture(scope="package")
def user_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's qcow2 image (``image: PATH``): oVirt's ``db-image`` disk and the OpenStack
    ``e2e-web`` root disk hold its bytes."""
    path = tmp_path_factory.mktemp("user-image") / "user.qcow2"
    return make(path, "qcow2", 5 * MiB, [(0x5A, 0, MiB), (0xA5, 3 * MiB, 512 << 10)])


@pytest.fixture(scope="package")
def guests() -> guestimage.GuestSet | guestimage.GuestBuildError:
    """The real Debian guests (``make guests`` builds them; built here if missing). A build
    that fails fails the guest's test, with its reason, not the whole package."""
    try:
        return guestimage.ensure()
    except guestimage.GuestBuildError as exc:
        return exc


@pytest.fixture(scope="package")
def servers_made(
    cloud: Cloud, user_image: Path, guests: guestimage.GuestSet | guestimage.GuestBuildError
) -> dict[str, Server]:
    """This module's OpenStack servers, added to the session's cloud: one image-backed with
    a data volume (its root disk from ``user_image``), one booting from a volume (shut off,
    so it must stay off)."""
    tag = uuid.uuid4().hex[:4]
    specs = [
        sc.Server(
            name=f"e2e-web-{tag}",
            flavor="m1.small",
            networks=["private"],
            root=sc.Disk(image=str(user_image)),
            volumes=[sc.Volume(name=f"e2e-web-data-{tag}", size_mib=8, data_mib=2)],
        ),
        sc.Server(
            name=f"e2e-bfv-{tag}",
            flavor="m1.small",
            networks=["private"],
            boot="volume",
            status="SHUTOFF",
            root=sc.Disk(size_mib=12, data_mib=3),
        ),
    ]
    if isinstance(guests, guestimage.GuestSet):
        # A real BIOS guest booting from a volume, its data volume mounted by UUID.
        specs.append(
            sc.Server(
                name=f"e2e-guest-{tag}",
                flavor="m1.small",
                networks=["private"],
                boot="volume",
                root=sc.Disk(image=str(guests.path("bios-root", "qcow2"))),
                volumes=[
                    sc.Volume(name=f"e2e-guest-data-{tag}", image=str(guests.path("data", "raw")))
                ],
            )
        )
    return {s.name.rsplit("-", 1)[0]: cloud.add_server(s) for s in specs}


def guest_vm(guests: guestimage.GuestSet) -> dict[str, Any]:
    """``guest``: a real BIOS guest, its root raw on virtio, its data disk (mounted on /data
    by UUID) qcow2 on virtio-scsi, one e1000 NIC: after a migration it must boot."""
    return {
        "name": "guest",
        "memory": "1GiB",
        "cpu": {"sockets": 1, "cores": 2, "threads": 1},
        "firmware": "bios",
        "nics": [{"network": "prod", "model": "e1000"}],
        "disks": [
            {
                "name": "guest-root",
                "image": str(guests.path("bios-root", "raw")),
                "format": "raw",
                "interface": "virtio",
                "bootable": True,
            },
            {
                "name": "guest-data",
                "image": str(guests.path("data", "qcow2")),
                "format": "cow",
                "interface": "virtio_scsi",
                "bootable": False,
            },
        ],
    }


@pytest.fixture(scope="package")
async def stack(
    servers: DevServices,
    cloud: Cloud,
    servers_made: dict[str, Server],
    user_image: Path,
    guests: guestimage.GuestSet | guestimage.GuestBuildError,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    database_url = await create_database(servers.database_url)
    ovirt = copy.deepcopy(OVIRT)
    db = next(vm for vm in ovirt["vms"] if vm["name"] == "db")
    db["disks"].append({"name": "db-image", "image": str(user_image), "format": "cow"})
    # A password found nowhere else, so a leak of it is found (tests/e2e/test_secrets.py).
    ovirt["users"] = {"admin@internal": f"engine-pw-{uuid.uuid4().hex}"}
    if isinstance(guests, guestimage.GuestSet):
        ovirt["vms"].append(guest_vm(guests))
    spec = StackSpec(
        workdir=tmp_path_factory.mktemp("stack"),
        nats_url=servers.nats_url,
        database_url=database_url,
        token=TOKEN,
        ovirt=ovirt,
        prefix=f"e2e{uuid.uuid4().hex[:8]}",
        namespace=NAMESPACE,
        remote=True,
        env={
            "HOIST_ORCHESTRATOR_LEASE_SECONDS": "8",
            "HOIST_ORCHESTRATOR_CONTROLLER_RESYNC_SECONDS": "1",
            # Warm plans' precopies a second apart (a plan's interval is whole minutes).
            "HOIST_ORCHESTRATOR_PRECOPY_INTERVAL_SECONDS": "1",
        },
    )
    try:
        async with Stack(spec, cloud=cloud) as running:
            yield running
    finally:
        await drop_database(database_url)


def svc(stack: Stack, name: str) -> ServiceProcess:
    return stack.services[name]


@pytest.fixture(scope="package")
async def providers(stack: Stack, cloud: Cloud) -> dict[str, str]:
    """The engine (its certificate pinned by fingerprint), the cloud (its CA) and the cluster
    Hoist runs in, registered through the inventory's API and Ready: kind -> id."""
    inventory = svc(stack, "inventory")
    ovirt = stack.ovirt_credentials()
    given = cloud.credentials()
    ca = given.pop("cacert")
    bodies = {
        "ovirt": {
            "name": unique("engine"),
            "type": "ovirt",
            "url": ovirt["url"],
            "credentials": {"user": ovirt["user"], "password": ovirt["password"]},
            "tls": {"fingerprint": ovirt["fingerprint"]},
        },
        "openstack": {
            "name": unique("cloud"),
            "type": "openstack",
            "url": cloud.auth_url,
            "credentials": given,
            "tls": {"caCert": ca},
        },
        "cluster": {"name": unique("host"), "type": "kubevirt"},
    }
    out: dict[str, str] = {}
    for kind, body in bodies.items():
        r = await api(inventory, "POST", "/providers", json=body)
        assert r.status_code == 201, r.text
        out[kind] = r.json()["id"]
    for pid in out.values():
        await wait_phase(inventory, pid, "Ready", within=90)
    return out


@pytest.fixture(scope="package")
async def maps(stack: Stack, providers: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Network and storage maps per source: source kind -> (network map, storage map)."""
    planner = svc(stack, "planner")
    entries = {
        "ovirt": (
            [{"source": {"name": "prod"}, "destination": {"type": "pod"}}],
            [{"source": {"name": "data"}, "destination": {"storageClass": "standard-wffc",
                                                          "volumeMode": "Block"}}],
        ),
        "openstack": (
            [{"source": {"name": "private"}, "destination": {"type": "pod"}}],
            [
                {"source": {"type": "glance"}, "destination": {"storageClass": "standard",
                                                               "volumeMode": "Filesystem"}},
                {"source": {"name": "standard"}, "destination": {"storageClass": "standard-wffc",
                                                                 "volumeMode": "Block"}},
            ],
        ),
    }  # fmt: skip
    out: dict[str, tuple[str, str]] = {}
    for kind, (network, storage) in entries.items():
        common = {"sourceProvider": providers[kind], "targetProvider": providers["cluster"]}
        ids = []
        for path, rows in (("/networkmaps", network), ("/storagemaps", storage)):
            r = await api(planner, "POST", path, json={**common, "name": unique(kind),
                                                      "entries": rows})  # fmt: skip
            assert r.status_code == 201, r.text
            assert r.json()["problems"] == [], r.json()
            ids.append(r.json()["id"])
        out[kind] = (ids[0], ids[1])
    return out


async def create_plan(
    stack: Stack,
    providers: dict[str, str],
    maps: dict[str, tuple[str, str]],
    kind: str,
    vms: list[str | dict[str, Any]],
    **extra: Any,
) -> dict[str, Any]:
    """A plan of these source VMs (by name, or a whole VM entry), created and validated
    Ready."""
    body = {
        "name": unique(f"{kind}-plan"),
        "sourceProvider": providers[kind],
        "targetProvider": providers["cluster"],
        "targetNamespace": NAMESPACE,
        "networkMap": maps[kind][0],
        "storageMap": maps[kind][1],
        "vms": [{"name": vm} if isinstance(vm, str) else vm for vm in vms],
        **extra,
    }
    r = await api(svc(stack, "planner"), "POST", "/plans", json=body)
    assert r.status_code == 201, r.text
    plan: dict[str, Any] = r.json()
    assert plan["phase"] == "Ready", plan["problems"]
    return plan


async def start(stack: Stack, plan: dict[str, Any]) -> dict[str, Any]:
    r = await api(svc(stack, "planner"), "POST", f"/plans/{plan['id']}/start")
    assert r.status_code == 202, r.text
    started: dict[str, Any] = r.json()["migration"]
    return started


async def wait_startable(stack: Stack, plan: dict[str, Any], within: float = 120) -> None:
    """Validate the plan until nothing blocks a start, as a user re-running it would.

    Sources settle after a failure on their own clock: the engine unlocks a disk only once
    the failed transfer's cleanup has ended, and the inventory learns that from its events;
    until then a start is refused with 422 (``ovirt.disk.locked``), which is right."""
    problems: list[dict[str, Any]] = []

    async def startable() -> bool:
        r = await api(svc(stack, "planner"), "POST", f"/plans/{plan['id']}/validate")
        assert r.status_code == 200, r.text
        problems[:] = [p for p in r.json()["problems"] if p["severity"] == "error"]
        return not problems

    try:
        await eventually(startable, within=within, every=1, what=f"plan {plan['name']} startable")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; problems: {problems}") from None


async def plan_status(stack: Stack, plan: dict[str, Any]) -> dict[str, Any]:
    r = await api(svc(stack, "planner"), "GET", f"/plans/{plan['id']}")
    assert r.status_code == 200, r.text
    status: dict[str, Any] = r.json()["status"]
    return status


async def wait_migration(
    stack: Stack, plan: dict[str, Any], migration_id: str, within: float = 240
) -> dict[str, Any]:
    """The migration's view once it has ended (every VM final)."""
    seen: dict[str, Any] = {}

    async def ended() -> bool:
        status = await plan_status(stack, plan)
        current = status["migration"] or {}
        seen.clear()
        seen.update(current)
        return current.get("id") == migration_id and current.get("phase") in FINAL

    try:
        await eventually(ended, within=within, every=0.5, what=f"plan {plan['name']} ended")
    except AssertionError as exc:
        logs = svc(stack, "orchestrator").logs()[-5000:]
        raise AssertionError(f"{exc}; last: {seen}\norchestrator:\n{logs}") from None
    return seen


async def vm_view(stack: Stack, plan: dict[str, Any], vm_id: str) -> dict[str, Any]:
    r = await api(svc(stack, "planner"), "GET", f"/plans/{plan['id']}/vms/{vm_id}")
    assert r.status_code == 200, r.text
    view: dict[str, Any] = r.json()
    return view


async def vms_of(stack: Stack, plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The current migration's VMs by source name."""
    r = await api(svc(stack, "planner"), "GET", f"/plans/{plan['id']}/vms")
    assert r.status_code == 200, r.text
    return {v["name"]: v for v in r.json()["items"]}
