"""Fixtures of the populator controller's tests: a simulated cluster per test whose kubelet
runs the real populators (``python -m services.populators``) for the image the settings
name, real NATS, the oVirt engine simulator and the OpenStack cloud simulator.

The tests create the Secret, the populator CR and the user claim themselves, as the
pipeline will, and watch what the controller does through the API and the simulator's
store (which sees every object ever created, so "made exactly once" is checkable).
"""

from __future__ import annotations

import asyncio
import base64
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from nats.aio.msg import Msg

from services.controller import Controller
from shared import envelope
from shared import populator as contract
from shared.bus import Bus
from shared.catalog import EventSpec
from shared.devservices import DevServices
from shared.settings import NatsSettings, OrchestratorSettings
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from sim.kube.kinds import Kind
from sim.kube.store import Change
from tests.conftest import eventually, kube_client
from tests.sim.ovirt.fixtures import engine  # noqa: F401 - the engine fixture, per module

REPO = Path(__file__).resolve().parents[2]
NS = "default"
IMAGE = OrchestratorSettings().populator_image
CONSUMER_IMAGE = "quay.io/hoist-tests/consumer"
MiB = 1 << 20
PLURALS = {kind.name: kind.plural for kind in contract.KINDS}
SOURCE_OF_KIND = {kind.name: kind.source.value for kind in contract.KINDS}


# --- the cluster, the controller, NATS ------------------------------------------------------


def sim_config(storage_root: Path) -> ClusterConfig:
    """A cluster whose kubelet runs the real populators (and a consumer that exits)."""
    # The populators of the repository these tests are in (the kubelet gives the pod a
    # clean environment, so ``-m`` alone would find whichever checkout the venv installed).
    run = f"import sys; sys.path.insert(0, {str(REPO)!r}); import runpy; "
    run += "runpy.run_module('services.populators', run_name='__main__')"
    images = {
        IMAGE.rsplit(":", 1)[0]: [sys.executable, "-c", run],
        CONSUMER_IMAGE: [sys.executable, "-c", "pass"],
    }
    return ClusterConfig(storage_root=storage_root, images=images)


@pytest.fixture
async def kube_sim(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with Cluster(sim_config(tmp_path / "volumes")) as sim:
        yield sim


@pytest.fixture
async def api(kube_sim: Cluster) -> AsyncIterator[client.ApiClient]:
    async with kube_client(kube_sim) as api:
        yield api


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


@pytest.fixture
def controller_settings() -> OrchestratorSettings:
    return OrchestratorSettings(controller_resync_seconds=2.0, controller_workers=4)


@pytest.fixture
async def nats_bus(servers: DevServices, prefix: str) -> AsyncIterator[Bus]:
    bus = Bus(NatsSettings(url=servers.nats_url, prefix=prefix), source="/hoist/tests")
    await bus.connect()
    await bus.ensure_streams()
    yield bus
    await bus.delete_streams()
    await bus.drain()


@dataclass
class Heard:
    """Every populator event published under the test's prefix (a core subscription:
    JetStream publishes reach it too, duplicates included)."""

    events: list[envelope.Envelope[Any]] = field(default_factory=list)

    def of(self, spec: EventSpec[Any]) -> list[envelope.Envelope[Any]]:
        return [e for e in self.events if e.type == spec.ce_type]


@pytest.fixture
async def heard(nats_bus: Bus) -> AsyncIterator[Heard]:
    got = Heard()

    async def on_msg(msg: Msg) -> None:
        got.events.append(envelope.decode(msg.data))

    sub = await nats_bus.nc.subscribe(nats_bus.subject("populator.>"), cb=on_msg)
    yield got
    await sub.unsubscribe()


@pytest.fixture
async def controller(
    api: client.ApiClient, controller_settings: OrchestratorSettings, nats_bus: Bus
) -> AsyncIterator[Controller]:
    c = Controller(api, controller_settings, nats_bus)
    await c.start()
    await c.wait_synced()
    yield c
    await c.stop()


@pytest.fixture
async def controllers(
    api: client.ApiClient, controller_settings: OrchestratorSettings, nats_bus: Bus
) -> AsyncIterator[Callable[[], Awaitable[Controller]]]:
    """Start controllers one after another (a restart); all are stopped at the end."""
    made: list[Controller] = []

    async def start() -> Controller:
        c = Controller(api, controller_settings, nats_bus)
        made.append(c)
        await c.start()
        return c

    yield start
    for c in made:
        await c.stop()


@dataclass
class Seen:
    """Every populator pod and prime claim the cluster ever held, by uid (latest state)."""

    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    primes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def on_change(self, kind: Kind, change: Change) -> None:
        obj = change.entry.obj
        name = obj["metadata"]["name"]
        if kind.plural == "pods" and name.startswith("populate-"):
            self.pods[obj["metadata"]["uid"]] = obj
        elif kind.plural == "persistentvolumeclaims" and name.startswith("prime-"):
            self.primes[obj["metadata"]["uid"]] = obj


@pytest.fixture
def seen(kube_sim: Cluster) -> Seen:
    s = Seen()
    kube_sim.store.listeners.append(s.on_change)
    return s


# --- what the pipeline creates -------------------------------------------------------------


def disk_ids(stem: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:6]
    return {
        "plan_id": f"plan-{tag}",
        "migration_id": f"mig-{tag}",
        "vm_id": f"vm-{stem}-{tag}",
        "disk_id": f"disk-{stem}-{tag}",
    }


async def make_secret(core: client.CoreV1Api, name: str, data: dict[str, str]) -> None:
    await core.create_namespaced_secret(
        NS,
        {
            "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        },
    )


async def make_populator(
    custom: client.CustomObjectsApi, kind: str, name: str, spec: dict[str, Any]
) -> dict[str, Any]:
    result: dict[str, Any] = await custom.create_namespaced_custom_object(
        contract.GROUP,
        contract.VERSION,
        NS,
        PLURALS[kind],
        {
            "apiVersion": contract.API_VERSION,
            "kind": kind,
            "metadata": {"name": name},
            "spec": spec,
        },
    )
    return result


async def make_claim(
    core: client.CoreV1Api,
    name: str,
    kind: str,
    ids: dict[str, str],
    *,
    mode: str,
    storage_class: str | None,
    size: str = "16Mi",
    total_bytes: int = 0,
) -> Any:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "volumeMode": mode,
        "resources": {"requests": {"storage": size}},
        "dataSourceRef": {
            "apiGroup": contract.GROUP,
            "kind": kind,
            "name": contract.populator_cr(name),
        },
        "selector": contract.HOLD_SELECTOR,  # as the orchestrator makes it
    }
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return await core.create_namespaced_persistent_volume_claim(
        NS,
        {
            "metadata": {
                "name": name,
                "labels": contract.object_labels(
                    ids["plan_id"], ids["migration_id"], ids["vm_id"], ids["disk_id"]
                ),
                "annotations": {
                    contract.CLUSTER: "local",
                    contract.TOTAL_BYTES: str(total_bytes),
                    contract.POPULATOR_KIND: SOURCE_OF_KIND[kind],
                },
            },
            "spec": spec,
        },
    )


async def make_consumer(core: client.CoreV1Api, claim: str, *, block: bool) -> None:
    """Forklift's ``pvcinit``: a pod using the claim, so WaitForFirstConsumer picks a node."""
    attach: dict[str, Any] = (
        {"volumeDevices": [{"name": "d", "devicePath": "/dev/consumer"}]}
        if block
        else {"volumeMounts": [{"name": "d", "mountPath": "/mnt/consumer"}]}
    )
    await core.create_namespaced_pod(
        NS,
        {
            "metadata": {"name": f"{claim}-pvcinit"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "c", "image": f"{CONSUMER_IMAGE}:1", **attach}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}],
            },
        },
    )


# --- observing -----------------------------------------------------------------------------


async def populator_status(custom: client.CustomObjectsApi, kind: str, name: str) -> dict[str, Any]:
    obj = await custom.get_namespaced_custom_object(
        contract.GROUP, contract.VERSION, NS, PLURALS[kind], name
    )
    return dict(obj.get("status") or {})


async def wait_status(
    custom: client.CustomObjectsApi, kind: str, name: str, phase: str, within: float = 60
) -> dict[str, Any]:
    last: dict[str, Any] = {}

    async def reached() -> bool:
        last.clear()
        last.update(await populator_status(custom, kind, name))
        return last.get("phase") == phase

    try:
        await eventually(reached, within=within, every=0.1, what=f"{kind} {name} {phase}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; status: {last}") from None
    return last


async def wait_populated(core: client.CoreV1Api, name: str, within: float = 90) -> Any:
    """The user claim once Bound with the finalizer gone."""
    found: list[Any] = []

    async def done() -> bool:
        pvc = await core.read_namespaced_persistent_volume_claim(name, NS)
        found[:] = [pvc]
        finalizers = pvc.metadata.finalizers or []
        return bool(pvc.status.phase == "Bound" and contract.FINALIZER not in finalizers)

    try:
        await eventually(done, within=within, every=0.1, what=f"claim {name} populated")
    except AssertionError as exc:
        pvc = found[0] if found else None
        raise AssertionError(f"{exc}; claim: {pvc.status if pvc else None}") from None
    return found[0]


async def claim_events(core: client.CoreV1Api, name: str) -> list[tuple[str, str, str]]:
    events = await core.list_namespaced_event(NS)
    return [
        (e.type, e.reason, e.message)
        for e in events.items
        if e.involved_object.name == name and e.involved_object.kind == "PersistentVolumeClaim"
    ]


async def wait_event(core: client.CoreV1Api, name: str, reason: str, within: float = 30) -> str:
    messages: list[str] = []

    async def told() -> bool:
        messages[:] = [m for _, r, m in await claim_events(core, name) if r == reason]
        return bool(messages)

    await eventually(told, within=within, every=0.1, what=f"event {reason} on {name}")
    return messages[0]


async def leftovers(core: client.CoreV1Api) -> tuple[list[str], list[str]]:
    """Names of prime claims and populator pods still in the namespace."""
    claims = await core.list_namespaced_persistent_volume_claim(NS)
    pods = await core.list_namespaced_pod(NS)
    return (
        [c.metadata.name for c in claims.items if c.metadata.name.startswith("prime-")],
        [p.metadata.name for p in pods.items if p.metadata.name.startswith("populate-")],
    )


async def wait_clean(core: client.CoreV1Api, within: float = 30) -> None:
    async def clean() -> bool:
        primes, pods = await leftovers(core)
        return not primes and not pods

    await eventually(clean, within=within, every=0.1, what="prime claims and pods gone")


def backing(volume: Any, block: bool) -> Path:
    source = volume.spec.host_path or volume.spec.local
    path = Path(source.path)
    return path if block else path / "disk.img"


async def not_found(call: Any, *args: Any) -> bool:
    try:
        await call(*args)
    except ApiException as exc:
        return bool(exc.status == 404)
    return False


async def running_pod(core: client.CoreV1Api, claim_uid: str, within: float = 60) -> Any:
    name = contract.populator_pod(claim_uid)
    found: list[Any] = []

    async def running() -> bool:
        try:
            pod = await core.read_namespaced_pod(name, NS)
        except ApiException:
            return False
        found[:] = [pod]
        return bool(pod.status.phase == "Running" and pod.status.pod_ip)

    await eventually(running, within=within, every=0.05, what=f"pod {name} running")
    return found[0]


async def sleep_a_little() -> None:
    await asyncio.sleep(0.3)
