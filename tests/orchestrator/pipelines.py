"""Running whole pipelines in tests: the orchestrator as a real process, plans published on
JetStream as the planner publishes them, and the migrated objects read back.

The pieces are real: the orchestrator service (``python -m services.orchestrator``), the
populator controller process, the simulated cluster (whose kubelet runs the real populators),
the oVirt engine with its real imageio, or the OpenStack cloud with real Keystone and Glance.
Only the planner is left out: tests publish ``plan.started`` themselves, so each one states
exactly the plan it runs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

from services.orchestrator.views import VmWithPipeline
from shared import catalog
from shared import payloads as p
from shared.bus import Bus
from shared.devservices import DevServices
from shared.settings import NatsSettings
from sim.kube.cluster import Cluster
from sim.ovirt.engine import Engine
from tests.answers import assert_documented
from tests.conftest import TOKEN, eventually
from tools.processes import ControllerProcess, ServiceProcess

BUS = {"virtio": "virtio", "virtio_scsi": "scsi", "sata": "sata", "ide": "sata"}
POPULATOR_IMAGE = "registry.example/hoist/hoist:test"
CONVERTER_IMAGE = "registry.example/hoist/converter:test"
#: Hook images (``tools.hookimage``, this repository's small hook program) by behaviour.
HOOK_IMAGES = {
    "registry.example/hoist/hook-ok": (),
    "registry.example/hoist/hook-fail": ("--exit", "3"),
    "registry.example/hoist/hook-slow": ("--sleep", "4"),
    "registry.example/hoist/hook-hang": ("--sleep", "600"),
}
NAMESPACE = "migrated"
FINAL = ("Succeeded", "Failed", "Canceled")


def ovirt_disk(name: str, size: str = "8MiB", **extra: Any) -> dict[str, Any]:
    """A disk of an oVirt engine scenario: half allocated in 1 MiB extents, so a copy moves
    real data and skips real holes."""
    return {"name": name, "size": size, "allocated": 0.5, "extent": "1MiB", **extra}


def planned(
    engine: Engine, name: str, *, storage_class: str = "standard", mode: str = "Filesystem"
) -> p.PlannedVm:
    """The VM as the planner would freeze it (see services/planner/shaping.py)."""
    vm = next(v for v in engine.inv.vms.values() if v.name == name)
    target = f"{name}-{uuid.uuid4().hex[:4]}"
    disks = []
    for i, att in enumerate(vm.disk_attachments):
        d = engine.inv.disks[att.disk_id]
        disks.append(
            p.PlannedDisk(
                disk_id=d.id,
                name=d.name,
                size_bytes=d.provisioned_size,
                format="qcow2" if d.image.fmt == "qcow2" else "raw",
                source_storage=d.storage_domain_id,
                boot=att.bootable,
                bus=BUS.get(att.interface, "virtio"),
                pvc_name=f"{target}-disk-{i}",
                storage_class=storage_class,
                volume_mode=mode,
                access_mode="ReadWriteOnce",
            )
        )
    nics = [
        p.PlannedNic(
            nic_id=n.id, name=n.name, mac=n.mac, model=n.interface, source_network="prod",
            target="pod",
        )
        for n in vm.nics[:1]
    ]  # fmt: skip
    firmware = "uefi" if vm.bios_type in ("q35_ovmf", "q35_secure_boot") else "bios"
    detail = {
        "sourceType": "ovirt",
        "cpu": {"sockets": vm.sockets, "cores": vm.cores, "threads": vm.threads},
        "memoryBytes": vm.memory,
        "firmware": firmware,
        "secureBoot": vm.bios_type == "q35_secure_boot",
        "machineType": "q35",
        "osType": vm.os_type,
        "description": vm.description,
    }
    return p.PlannedVm(
        vm_id=vm.id,
        name=vm.name,
        target_name=target,
        disks=disks,
        nics=nics,
        source_power_state=vm.status,
        detail=detail,
    )


async def ovirt_source(engine: Engine, api: client.ApiClient) -> p.ProviderRef:
    """The engine as a provider of the frozen plan, its credentials in a Secret of Hoist's."""
    ref = p.ProviderRef(
        id=str(uuid.uuid4()),
        type=p.ProviderType.OVIRT,
        url=engine.api_url,
        secret=p.ResourceRef(namespace="hoist", name=f"engine-{uuid.uuid4().hex[:6]}"),
    )
    await put_secret(
        api,
        ref.secret.name,
        {"user": "admin@internal", "password": "secret", "fingerprint": engine.cert.fingerprint},
    )
    return ref


def images() -> dict[str, list[str]]:
    """What the simulated kubelet runs for the populator image: its real entrypoint; for
    the conversion image a fake converter (``tests.orchestrator.fakeconverter``): a real
    conversion takes minutes, and has its own test (``tests/converter``)."""
    return {
        POPULATOR_IMAGE.rsplit(":", 1)[0]: [sys.executable, "-m", "services.populators"],
        # This checkout's tests (the kubelet gives a pod no PYTHONPATH of the test's).
        CONVERTER_IMAGE.rsplit(":", 1)[0]: [
            "env",
            f"PYTHONPATH={Path(__file__).resolve().parents[2]}",
            sys.executable,
            "-m",
            "tests.orchestrator.fakeconverter",
        ],
        **{
            image: [
                "env",
                f"PYTHONPATH={Path(__file__).resolve().parents[2]}",
                sys.executable,
                "-m",
                "tools.hookimage",
                *args,
            ]
            for image, args in HOOK_IMAGES.items()
        },
    }


def orchestrator_env(
    servers: DevServices, database_url: str, prefix: str, kubeconfig: Path, **extra: str
) -> dict[str, str]:
    return {
        "HOIST_NATS_URL": servers.nats_url,
        "HOIST_NATS_PREFIX": prefix,
        "HOIST_DATABASE_URL": database_url,
        "HOIST_KUBE_KUBECONFIG": str(kubeconfig),
        "HOIST_ORCHESTRATOR_POLL_SECONDS": "0.3",
        "HOIST_ORCHESTRATOR_TRANSFER_POLL_SECONDS": "1.5",
        "HOIST_ORCHESTRATOR_LEASE_SECONDS": "8",
        "HOIST_ORCHESTRATOR_POWER_OFF_TIMEOUT_SECONDS": "3",
        "HOIST_ORCHESTRATOR_POPULATOR_IMAGE": POPULATOR_IMAGE,
        "HOIST_ORCHESTRATOR_CONVERTER_IMAGE": CONVERTER_IMAGE,
        "HOIST_ORCHESTRATOR_CONTROLLER_RESYNC_SECONDS": "1",
        "HOIST_LOG_FORMAT": "json",
        **extra,
    }


def orchestrator(env: dict[str, str], logs: Path) -> ServiceProcess:
    return ServiceProcess("orchestrator", env, logs, TOKEN)


@contextlib.asynccontextmanager
async def publisher(servers: DevServices, prefix: str) -> AsyncIterator[Bus]:
    bus = Bus(NatsSettings(url=servers.nats_url, prefix=prefix), source="/hoist/planner")
    await bus.connect()
    await bus.ensure_streams()
    try:
        yield bus
    finally:
        await bus.drain()


def plan_of(source: p.ProviderRef, vms: list[p.PlannedVm], **extra: Any) -> p.PlanStarted:
    """A started plan into the simulated cluster Hoist runs in (a target provider without a
    URL means that cluster)."""
    return p.PlanStarted(
        plan_id=str(uuid.uuid4()),
        migration_id=str(uuid.uuid4()),
        plan_name=f"{source.type.value}-test",
        source=source,
        target=p.ProviderRef(
            id=str(uuid.uuid4()),
            type=p.ProviderType.KUBEVIRT,
            url="",
            secret=p.ResourceRef(namespace="hoist", name="none"),
        ),
        target_namespace=NAMESPACE,
        vms=vms,
        **extra,
    )


async def start_plan(bus: Bus, plan: p.PlanStarted) -> None:
    """Publish a plan as the planner does: one part, the planner's event id."""
    await bus.publish(
        catalog.PLAN_STARTED, plan, event_id=f"plan-started-{plan.migration_id}-{plan.part}"
    )


async def cancel(bus: Bus, plan: p.PlanStarted, vm_ids: list[str] | None = None) -> None:
    data = p.PlanCancelRequested(
        plan_id=plan.plan_id, migration_id=plan.migration_id, vm_ids=vm_ids or []
    )
    await bus.publish(catalog.PLAN_CANCEL_REQUESTED, data)


async def vm_state(svc: ServiceProcess, plan: p.PlanStarted, vm_id: str) -> dict[str, Any]:
    r = await svc.client.get(
        f"/api/v1/migrations/{plan.migration_id}/vms/{vm_id}", headers=svc.auth()
    )
    if r.status_code != 200:
        return {"phase": None, "status": r.status_code}
    body: dict[str, Any] = r.json()
    assert_documented("orchestrator", body, VmWithPipeline)
    return body


async def wait_vm(
    svc: ServiceProcess,
    plan: p.PlanStarted,
    vm_id: str,
    phases: tuple[str, ...] = FINAL,
    *,
    step: str | None = None,
    within: float = 120,
) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def check() -> bool:
        seen.clear()
        seen.update(await vm_state(svc, plan, vm_id))
        if step is not None:
            return bool(seen.get("step") == step and seen.get("phase") in phases)
        return seen.get("phase") in phases

    try:
        await eventually(check, within=within, what=f"VM {vm_id} in {phases} (step {step})")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last: {seen}\n{svc.logs()[-6000:]}") from None
    return seen


async def target_file(api: client.ApiClient, namespace: str, claim: str) -> Path:
    """The file holding a claim's bytes in the simulated cluster (Block: the PV's sparse
    file; Filesystem: ``disk.img`` in the PV's directory)."""
    core = client.CoreV1Api(api)
    pvc = await core.read_namespaced_persistent_volume_claim(claim, namespace)
    pv = await core.read_persistent_volume(pvc.spec.volume_name)
    backing = Path((pv.spec.host_path or pv.spec.local).path)
    return backing if pvc.spec.volume_mode == "Block" else backing / "disk.img"


def sha256_prefix(path: Path, size: int) -> str:
    """sha256 of the first ``size`` bytes (a Block volume is rounded up to whole MiB)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        left = size
        while left:
            chunk = f.read(min(left, 1 << 20))
            if not chunk:
                digest.update(bytes(left))  # a sparse tail reads as zeros
                break
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


async def put_secret(api: client.ApiClient, name: str, data: dict[str, str]) -> None:
    body = {
        "metadata": {"name": name, "namespace": "hoist"},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
    with contextlib.suppress(client.ApiException):
        await client.CoreV1Api(api).create_namespaced_secret("hoist", body)


async def labelled(api: client.ApiClient, selector: str) -> dict[str, list[str]]:
    """Names of what exists in the target namespace with these labels, by kind."""
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    out: dict[str, list[str]] = {}
    out["pvc"] = [
        o.metadata.name
        for o in (
            await core.list_namespaced_persistent_volume_claim(NAMESPACE, label_selector=selector)
        ).items
    ]
    out["pod"] = [
        o.metadata.name
        for o in (await core.list_namespaced_pod(NAMESPACE, label_selector=selector)).items
    ]
    out["secret"] = [
        o.metadata.name
        for o in (await core.list_namespaced_secret(NAMESPACE, label_selector=selector)).items
    ]
    for group, version, plural in (
        ("hoist.io", "v1beta1", "ovirtvolumepopulators"),
        ("hoist.io", "v1beta1", "openstackvolumepopulators"),
        ("kubevirt.io", "v1", "virtualmachines"),
    ):
        found = await custom.list_namespaced_custom_object(
            group, version, NAMESPACE, plural, label_selector=selector
        )
        out[plural] = [o["metadata"]["name"] for o in found["items"]]
    return out


__all__ = ["Cluster", "ControllerProcess"]


async def killed_mid_step(
    first: ServiceProcess,
    env: dict[str, str],
    logs: Path,
    plan: p.PlanStarted,
    vm_id: str,
    step: str,
    uids: Callable[[], Awaitable[set[str]]],
) -> tuple[dict[str, Any], set[str]]:
    """Kill -9 the orchestrator while ``vm_id`` runs ``step``, a second one started first
    taking the VM over; the VM's final state (read from the second) and every uid ``uids``
    saw meanwhile (the step's objects: one uid means the restarted step adopted the object,
    not made it again). The first orchestrator runs again, the second is stopped."""
    seen: set[str] = set()

    async def watch() -> None:
        while True:
            seen.update(await uids())
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch())
    second = orchestrator(env, logs)
    try:
        await wait_vm(first, plan, vm_id, ("Running",), step=step, within=180)
        await second.start()
        await second.wait_ready(60)
        assert first.proc is not None
        first.proc.send_signal(signal.SIGKILL)
        await first.proc.wait()
        state = await wait_vm(second, plan, vm_id, within=120)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    await first.start()
    await first.wait_ready(60)
    await second.terminate()
    return state, seen
