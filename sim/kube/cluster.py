"""One simulated cluster: the store, the API server over it, and its controllers.

`Cluster` is what tests, the demo and benchmarks hold: `await cluster.start()` serves the
API (HTTPS with a generated CA by default) and runs the controllers; `kubeconfig()` writes
a file kubectl and kubernetes_asyncio accept unchanged; `stop()` kills every pod process
and frees the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import yaml

from sim.kube import crds, rbac, reviews
from sim.kube.admission import Admission
from sim.kube.authn import Authenticator
from sim.kube.config import ClusterConfig
from sim.kube.controllers import Controller
from sim.kube.faults import Faults
from sim.kube.kinds import BUILTIN, Kind, Registry
from sim.kube.kubeevents import Recorder
from sim.kube.store import Obj, Store
from sim.kube.validation import Validator

log = logging.getLogger(__name__)

#: name -> "module:Class" of each controller, started in this order.
CONTROLLERS: dict[str, str] = {
    "gc": "sim.kube.controllers.collecting:GarbageCollector",
    "namespaces": "sim.kube.controllers.namespaces:NamespaceController",
    "storageprofiles": "sim.kube.controllers.profiles:StorageProfiles",
    "binder": "sim.kube.controllers.binding:Binder",
    "provisioner": "sim.kube.controllers.provisioning:Provisioner",
    "scheduler": "sim.kube.controllers.scheduling:Scheduler",
    "kubelet": "sim.kube.controllers.kubelet:Kubelet",
    "jobs": "sim.kube.controllers.jobs:JobController",
    "protection": "sim.kube.controllers.protection:Protection",
    "capacity": "sim.kube.controllers.capacity:CapacityPublisher",
    "virtualmachines": "sim.kube.controllers.virtualmachines:VirtualMachines",
}


class Cluster:
    def __init__(self, config: ClusterConfig | None = None, **overrides: Any) -> None:
        self.config = config or ClusterConfig(**overrides)
        self.registry = Registry(
            [k for k in BUILTIN if self.config.kubevirt or k.group != "kubevirt.io"]
        )
        self.store = Store(self.registry, history=self.config.history)
        self.validator = Validator(self.config.kube_version, strict=self.config.strict_fields)
        self.store.admitters.append(Admission(self.store, self.validator))
        self.crds = crds.CrdRegistrar(self.store, self.registry, self.validator)
        self.recorder = Recorder(self.store, self.registry)
        self.faults = Faults()
        for kind in reviews.KINDS:
            self.registry.add(kind)
        self.authn = Authenticator(self)
        self.authz = rbac.Authorizer(self)
        self.controllers: dict[str, Controller] = {}
        self.server: Any = None
        self._bookmarks: asyncio.Task[None] | None = None

    # -- lookups -------------------------------------------------------------------------

    def kind(self, plural: str, group: str = "", version: str = "v1") -> Kind:
        kind = self.registry.lookup(group, version, plural)
        if kind is None:
            raise KeyError(f"{plural}.{group or 'core'}/{version} is not served")
        return kind

    def record(self, obj: Obj, event_type: str, reason: str, message: str, component: str) -> None:
        self.recorder.record(obj, event_type, reason, message, component)

    # -- life cycle ----------------------------------------------------------------------

    def bootstrap(self) -> None:
        """The objects every cluster has before anyone talks to it."""
        ns = self.kind("namespaces")
        for name in ("default", "kube-system", "kube-public", *self.config.namespaces):
            if self.store.find(ns, None, name) is None:
                self.store.create(ns, {"metadata": {"name": name}})
        for name in ("default",):
            sa = self.kind("serviceaccounts")
            if self.store.find(sa, "default", name) is None:
                self.store.create(sa, {"metadata": {"name": name}}, "default")
        nodes = self.kind("nodes")
        for node in self.config.nodes:
            if self.store.find(nodes, None, node.name) is None:
                self.store.create(
                    nodes,
                    {
                        "metadata": {
                            "name": node.name,
                            "labels": {"kubernetes.io/hostname": node.name},
                        },
                        "spec": {},
                    },
                )
                allocatable = {"cpu": node.cpu, "memory": node.memory, "pods": str(node.pods)}
                status = {
                    "capacity": allocatable,
                    "allocatable": allocatable,
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                    "addresses": [
                        {"type": "InternalIP", "address": self.config.host},
                        {"type": "Hostname", "address": node.name},
                    ],
                    "nodeInfo": self._node_info(node.name),
                }
                self.store.mutate(
                    nodes, None, node.name, _setter("status", status), subresource="status"
                )
        sc = self.kind("storageclasses", "storage.k8s.io")
        for storage_class in self.config.storage_classes:
            if self.store.find(sc, None, storage_class["metadata"]["name"]) is None:
                self.store.create(sc, storage_class)
        self.crds.install_builtin()
        rbac.bootstrap(self)

    def _node_info(self, name: str) -> dict[str, str]:
        """What the kubelet reports of its host (the simulated nodes all run on this one)."""
        uname = os.uname()
        ident = uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.nodes.sim.hoist.io")
        return {
            "kubeletVersion": f"v{self.config.kube_version}.0",
            "kubeProxyVersion": "",
            "osImage": _os_image(),
            "kernelVersion": uname.release,
            "operatingSystem": "linux",
            "architecture": _GOARCH.get(uname.machine, uname.machine),
            "containerRuntimeVersion": "hoist-sim://" + self.config.kube_version,
            "machineID": ident.hex,
            "systemUUID": str(ident),
            "bootID": str(uuid.uuid4()),
        }

    def enabled(self) -> list[str]:
        return [name for name in CONTROLLERS if name not in self.config.disabled]

    async def start(self, *, serve_api: bool = True) -> Cluster:
        """Bootstrap, run the controllers and (unless told not to) serve the API."""
        self.bootstrap()
        for name in self.enabled():
            module, _, cls = CONTROLLERS[name].partition(":")
            controller: Controller = getattr(importlib.import_module(module), cls)(self)
            self.controllers[name] = controller
            controller.start()
        if serve_api:
            from sim.kube.apiserver import serve

            self.server = await serve(self)
        self._bookmarks = asyncio.create_task(self._bookmark_loop(), name="sim-kube-bookmarks")
        return self

    async def _bookmark_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.bookmark_seconds)
            self.store.bookmark()

    async def stop(self) -> None:
        if self._bookmarks is not None:
            self._bookmarks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._bookmarks
        for controller in reversed(list(self.controllers.values())):
            await controller.stop()
        self.controllers.clear()
        self.store.drop_watches()
        if self.server is not None:
            await self.server.close()
            self.server = None

    async def __aenter__(self) -> Cluster:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def service_account_token(self, namespace: str, name: str, seconds: int = 3600) -> str:
        """A bound token for a ServiceAccount, creating the account if it does not exist
        (what ``kubectl create serviceaccount`` then ``kubectl create token`` give)."""
        kind = self.kind("serviceaccounts")
        if self.store.find(kind, namespace, name) is None:
            self.store.create(kind, {"metadata": {"name": name}}, namespace)
        return self.authn.issue(namespace, name, seconds)[0]

    # -- clients -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.server is not None, "the cluster is not started"
        return str(self.server.url)

    def kubeconfig_dict(self, token: str | None = None) -> dict[str, Any]:
        assert self.server is not None, "the cluster is not started"
        cluster: dict[str, Any] = {"server": self.url}
        if self.server.ca_data:
            cluster["certificate-authority-data"] = self.server.ca_data
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "hoist-sim", "cluster": cluster}],
            "users": [{"name": "admin", "user": {"token": token or self.config.token}}],
            "contexts": [
                {
                    "name": "hoist-sim",
                    "context": {"cluster": "hoist-sim", "user": "admin", "namespace": "default"},
                }
            ],
            "current-context": "hoist-sim",
            "preferences": {},
        }

    def kubeconfig(self, path: Path, token: str | None = None) -> Path:
        """Write a kubeconfig (mode 0600: it holds a token) and return its path."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        path.write_text(yaml.safe_dump(self.kubeconfig_dict(token), sort_keys=False))
        return path


def _setter(field: str, value: Any) -> Any:
    def change(obj: Obj) -> None:
        obj[field] = value

    return change


_GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def _os_image() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.partition("=")[2].strip('"')
    except OSError:
        pass
    return "Linux"
