"""The whole of Hoist on one machine: the sources, the cluster, the four services and the
populator controller, each as it runs in production, wired together.

``make demo`` and the end-to-end tests both stand on this, so the demo a user runs is the
system the tests prove. What cannot run here is simulated at the wire level: the oVirt
engine (with the real ovirt-imageio daemon serving its disks), the OpenStack cloud (real
Keystone and Glance behind simulated Nova, Cinder and Neutron) and the Kubernetes API
server, whose kubelet runs the real populator entrypoint for the populator image. The
services are real processes (``python -m services.<name>``) talking over the NATS and
PostgreSQL they are given.

NATS and PostgreSQL are not started here: the caller owns them (the demo starts private
ones, the tests share the session's), so one server can carry several stacks, each under
its own NATS prefix and database.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig, ImageRoot
from tools.processes import SERVICES, ControllerProcess, ServiceProcess

if TYPE_CHECKING:
    from kubernetes_asyncio import client

    from sim.openstack.cloud import Cloud
    from sim.openstack.scenario import Scenario
    from sim.ovirt.engine import Engine
    from tools.downtime import VmPower

#: The image the orchestrator puts in populator pods; the simulated kubelet runs it as the
#: image's real entrypoint (``python -m services.populators``) on this machine.
POPULATOR_IMAGE = "registry.example/hoist/hoist:dev"
POPULATOR_ENTRYPOINT = [sys.executable, "-m", "services.populators"]
#: ConvertGuest's image (virt-v2v, libguestfs, nbdkit): run as its real entrypoint too, so a
#: conversion pod runs this machine's Debian virt-v2v-in-place on the volumes' files.
CONVERTER_IMAGE = "registry.example/hoist/converter:dev"
CONVERTER_ENTRYPOINT = [
    "env",
    f"PYTHONPATH={Path(__file__).resolve().parents[1]}",  # this checkout's converter
    sys.executable,
    "-m",
    "services.converter",
]

#: Hook images (``tools.hookimage``, this checkout's small hook program): one that works,
#: one that fails. A plan's hook names one as its image (``docs/hooks.md``).
HOOK_IMAGE = "registry.example/hoist/hook:dev"
FAILING_HOOK_IMAGE = "registry.example/hoist/hook-fail:dev"
HOOK_ENTRYPOINT = [*CONVERTER_ENTRYPOINT[:-1], "tools.hookimage"]


@dataclass
class StackSpec:
    """What one stack runs. Sources are optional: a stack may carry either or both."""

    workdir: Path
    nats_url: str
    database_url: str
    token: str
    #: A ``sim.ovirt`` scenario (``sim.ovirt.scenario.from_dict``), or None: no engine.
    ovirt: dict[str, Any] | None = None
    #: A ``sim.openstack`` scenario to start a cloud of, or None (see ``Stack(cloud=...)``).
    openstack: Scenario | None = None
    prefix: str = "hoist"
    #: The target namespace the VMs land in; it exists in the cluster from the start.
    namespace: str = "migrated"
    #: More ``HOIST_*`` settings for every service (they win over the stack's own).
    env: dict[str, str] = field(default_factory=dict)
    #: A built Hoist image (``make image``) populator pods run in (its root filesystem,
    #: chrooted, as its user); empty: they run on this machine's Python.
    image: str = ""
    #: Also a second cluster, a remote target (``Stack.remote``): Hoist's definitions and
    #: its least-privilege identity applied there (``shared.remotetarget``), as its admin
    #: would; register it as a ``kubevirt`` provider with ``remote_credentials()``.
    remote: bool = False


class Stack:
    """Starts everything on ``__aenter__`` (returning once every service answers
    ``/readyz``), stops everything on ``__aexit__``, in reverse order."""

    def __init__(self, spec: StackSpec, *, cloud: Cloud | None = None) -> None:
        self.spec = spec
        self.logs = spec.workdir / "logs"
        self.kubeconfig = spec.workdir / "kubeconfig"
        self.cluster: Cluster
        self.remote: Cluster | None = None
        self.engine: Engine | None = None
        #: A running cloud the caller lends (tests share one); else started from the spec.
        self.cloud: Cloud | None = cloud
        self.services: dict[str, ServiceProcess] = {}
        self.controller: ControllerProcess
        #: The web console: the pages under /ui and every API on its one URL.
        self.console: ServiceProcess
        self._exits = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Stack:
        try:
            await self._start()
        except BaseException:
            await self._exits.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._exits.aclose()

    async def _start(self) -> None:
        spec = self.spec
        self.logs.mkdir(parents=True, exist_ok=True)
        images = {
            POPULATOR_IMAGE.rsplit(":", 1)[0]: POPULATOR_ENTRYPOINT,
            CONVERTER_IMAGE.rsplit(":", 1)[0]: CONVERTER_ENTRYPOINT,
            HOOK_IMAGE.rsplit(":", 1)[0]: HOOK_ENTRYPOINT,
            FAILING_HOOK_IMAGE.rsplit(":", 1)[0]: [*HOOK_ENTRYPOINT, "--exit", "1"],
        }
        roots: dict[str, ImageRoot] = {}
        if spec.image:  # populator pods run in the built image, not on this machine's Python
            from tools import containerimage

            root = self._exits.enter_context(containerimage.mounted(spec.image))
            roots[POPULATOR_IMAGE.rsplit(":", 1)[0]] = root
            images[POPULATOR_IMAGE.rsplit(":", 1)[0]] = root.entrypoint
        config = ClusterConfig(
            storage_root=spec.workdir / "volumes",
            images=images,
            image_roots=roots,
            namespaces=("hoist", spec.namespace),
            # Pods' logs outlive them here, beside the services' (what a leak scan reads).
            log_archive=self.logs / "pods",
        )
        self.cluster = await self._exits.enter_async_context(Cluster(config))
        self.cluster.kubeconfig(self.kubeconfig)
        if spec.remote:
            remote = ClusterConfig(
                storage_root=spec.workdir / "remote-volumes",
                images=images,
                image_roots=roots,
                namespaces=(spec.namespace,),
            )
            self.remote = await self._exits.enter_async_context(Cluster(remote))
            await _install_remote(self.remote)
        if spec.ovirt is not None:
            from sim.ovirt import scenario
            from sim.ovirt.engine import Engine

            inventory, faults = scenario.from_dict(spec.ovirt)
            self.engine = await self._exits.enter_async_context(
                Engine(inventory, faults, spec.workdir / "engine")
            )
        if spec.openstack is not None and self.cloud is None:
            self.cloud = await self._exits.enter_async_context(_cloud_of(spec))

        env = self.environment()
        for name in SERVICES:
            extra: dict[str, str] = {}
            if name == "planner":  # it validates plans against the inventory's API
                extra["HOIST_PLANNER_INVENTORY_URL"] = self.services["inventory"].url
            self.services[name] = ServiceProcess(name, env | extra, self.logs, spec.token)
        self.controller = ControllerProcess(env, self.logs)
        upstreams = {f"HOIST_CONSOLE_{n.upper()}_URL": s.url for n, s in self.services.items()}
        self.console = ServiceProcess("console", env | upstreams, self.logs, spec.token)
        # Registered before they start, so a failed start still stops what did start.
        self._exits.push_async_callback(self._stop_processes)
        every = {**self.services, "console": self.console}
        await asyncio.gather(*(s.start() for s in every.values()))
        await self.controller.start()
        ready = await asyncio.gather(*(s.wait_ready(90) for s in every.values()))
        late = [
            f"{name}: {state.get('status')} {state.get('checks', '')}"
            for name, state in zip(every, ready, strict=True)
            if state.get("http_status") != 200
        ]
        if late:
            raise RuntimeError(f"services not ready (logs in {self.logs}/): {'; '.join(late)}")

    def environment(self) -> dict[str, str]:
        """The settings every service and the controller run with."""
        spec = self.spec
        return {
            "HOIST_NATS_URL": spec.nats_url,
            "HOIST_NATS_PREFIX": spec.prefix,
            "HOIST_DATABASE_URL": spec.database_url,
            "HOIST_KUBE_KUBECONFIG": str(self.kubeconfig.resolve()),
            "HOIST_LOG_FORMAT": "json",
            "HOIST_ORCHESTRATOR_POPULATOR_IMAGE": POPULATOR_IMAGE,
            "HOIST_ORCHESTRATOR_CONVERTER_IMAGE": CONVERTER_IMAGE,
            # Quicker than production's rhythm, so a small disk's migration is not mostly
            # waiting for the next poll; none of these changes what the services do.
            "HOIST_ORCHESTRATOR_POLL_SECONDS": "0.5",
            "HOIST_ORCHESTRATOR_TRANSFER_POLL_SECONDS": "2",
            "HOIST_ORCHESTRATOR_CONTROLLER_RESYNC_SECONDS": "2",
            "HOIST_ORCHESTRATOR_POWER_OFF_TIMEOUT_SECONDS": "5",
            "HOIST_PROGRESS_SCRAPE_SECONDS": "1",
            "HOIST_PROGRESS_FLUSH_SECONDS": "0.5",
            "HOIST_PROGRESS_PUBLISH_MIN_SECONDS": "0.5",
            "HOIST_PLANNER_PROGRESS_FLUSH_SECONDS": "0.5",
            "HOIST_PLANNER_REVALIDATE_SECONDS": "2",
            **spec.env,
        }

    def cli_env(self) -> dict[str, str]:
        """What the ``hoist`` CLI needs to reach this stack: the token and each service's
        URL (every service listens on a port of its own here, where an Ingress would serve
        them under one URL)."""
        env = {"HOIST_CLI_TOKEN": self.spec.token}
        for name, svc in self.services.items():
            env[f"HOIST_CLI_{name.upper()}_URL"] = svc.url
        return env

    @contextlib.asynccontextmanager
    async def kube(self, remote: bool = False) -> AsyncIterator[client.ApiClient]:
        """A kubernetes-asyncio client on the cluster, as the kubeconfig a user has; with
        ``remote``, on the remote target cluster as its administrator."""
        from kubernetes_asyncio import client, config

        configuration = client.Configuration()
        if remote:
            assert self.remote is not None, "this stack has no remote cluster"
            await config.load_kube_config_from_dict(
                self.remote.kubeconfig_dict(), client_configuration=configuration
            )
        else:
            await config.load_kube_config(str(self.kubeconfig), client_configuration=configuration)
        async with client.ApiClient(configuration) as api:
            yield api

    def remote_credentials(self) -> dict[str, str]:
        """A fresh token of Hoist's ServiceAccount in the remote cluster, and its URL and
        CA: a kubevirt provider's ``url``, ``credentials.token`` and ``tls.caCert``."""
        import base64

        from shared import remotetarget

        assert self.remote is not None, "this stack has no remote cluster"
        assert self.remote.server is not None
        token = self.remote.service_account_token(
            remotetarget.DEFAULT_NAMESPACE, remotetarget.DEFAULT_NAME
        )
        ca = base64.b64decode(self.remote.server.ca_data or "").decode()
        return {"url": self.remote.url, "token": token, "cacert": ca}

    async def volume_file(self, namespace: str, pvc: str, remote: bool = False) -> Path:
        """The file holding a claim's bytes: a Block volume's sparse file, or ``disk.img``
        in a Filesystem volume's directory. It may be longer than the disk (sizes are
        rounded up), never shorter."""
        from kubernetes_asyncio import client

        async with self.kube(remote) as api:
            core = client.CoreV1Api(api)
            claim = await core.read_namespaced_persistent_volume_claim(pvc, namespace)
            volume = await core.read_persistent_volume(claim.spec.volume_name)
        backing = Path((volume.spec.host_path or volume.spec.local).path)
        return backing if claim.spec.volume_mode == "Block" else backing / "disk.img"

    def ovirt_credentials(self) -> dict[str, str]:
        """How a user logs in to the engine (its scenario's first user, ``admin@internal``
        unless the scenario names others), and the certificate fingerprint to pin."""
        assert self.engine is not None, "this stack has no oVirt engine"
        user, password = next(iter(self.engine.inv.users.items()))
        return {
            "url": self.engine.api_url,
            "user": user,
            "password": password,
            "fingerprint": self.engine.cert.fingerprint,
        }

    async def power_timelines(self) -> dict[str, VmPower]:
        """Every source VM's power timeline by VM id, from both simulators'
        ``/sim/power-timeline`` (``tools/downtime.py`` counts them): what a test checks a
        plan's downtime with. A lent cloud's servers of other tests are in it too."""
        from sim.openstack.keystone_glance import password_token
        from tools import downtime

        found: dict[str, VmPower] = {}
        if self.engine is not None:
            creds = self.ovirt_credentials()
            found |= await downtime.ovirt_power_timelines(
                self.engine.url,
                user=creds["user"],
                password=creds["password"],
                ca_file=self.engine.cert.ca_file,
            )
        if self.cloud is not None:
            cloud = self.cloud
            token, _ = await password_token(
                cloud.auth_url,
                cloud.scenario.user,
                cloud.scenario.password,
                cloud.scenario.project,
                ca_file=cloud.ca_file,
            )
            found |= await downtime.openstack_power_timelines(
                cloud.sim_url, token=token, ca_file=cloud.ca_file
            )
        return found

    async def _stop_processes(self) -> None:
        # The orchestrator first (it stops handing out work), then the rest together, the
        # controller last (it owns pods that may still be finishing).
        async def stop(name: str) -> None:
            svc = self.services.get(name)
            if svc is not None:
                with contextlib.suppress(RuntimeError):
                    await svc.terminate()

        await stop("orchestrator")
        await asyncio.gather(*(stop(n) for n in ("planner", "progress", "inventory")))
        if hasattr(self, "console"):
            with contextlib.suppress(RuntimeError):
                await self.console.terminate()
        if hasattr(self, "controller"):
            await self.controller.stop()


async def _install_remote(remote: Cluster) -> None:
    """What the remote cluster's admin applies (``python -m tools.remoterbac``)."""
    from kubernetes_asyncio import client, config

    from shared import remotetarget
    from shared.kube import Kube

    configuration = client.Configuration()
    await config.load_kube_config_from_dict(
        remote.kubeconfig_dict(), client_configuration=configuration
    )
    async with client.ApiClient(configuration) as api:
        await remotetarget.install(Kube(api, timeout=30.0))


@contextlib.asynccontextmanager
async def _cloud_of(spec: StackSpec) -> AsyncIterator[Cloud]:
    """A cloud in a thread of its own (its Keystone and Glance calls block), entered and
    left off this loop."""
    from sim.openstack.cloud import running_cloud

    manager: contextlib.AbstractContextManager[Cloud] = running_cloud(
        spec.openstack, spec.workdir / "cloud"
    )
    cloud = await asyncio.to_thread(manager.__enter__)
    try:
        yield cloud
    finally:
        await asyncio.to_thread(_leave, manager)


def _leave(manager: contextlib.AbstractContextManager[Any]) -> None:
    manager.__exit__(None, None, None)
