"""Namespace life cycle: a deleted namespace is Terminating until it is empty.

As in Kubernetes, deleting a namespace only marks it (its `spec.finalizers` holds
`kubernetes`); this controller deletes everything in it, waits for the objects that finish
their own deletion later (pods being terminated, objects with finalizers), then drops the
finalizer so the namespace goes. Creating objects in a Terminating namespace is refused by
the store with 403, as on a real cluster.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sim.kube.controllers import Controller
from sim.kube.errors import ApiError
from sim.kube.kinds import Kind
from sim.kube.store import Obj


class NamespaceController(Controller):
    name = "namespaces"

    def __init__(self, cluster: Any) -> None:
        super().__init__(cluster)
        self.kind = cluster.kind("namespaces")
        self.store.deletion_gates.append(self._gate)

    def _gate(self, kind: Kind, obj: Obj, grace_period: int | None) -> bool:
        return kind is self.kind and bool((obj.get("spec") or {}).get("finalizers"))

    async def shutdown(self) -> None:
        if self._gate in self.store.deletion_gates:
            self.store.deletion_gates.remove(self._gate)

    async def run(self) -> None:
        watcher = self.store.watch(self.kind)
        try:
            while True:
                for _, obj in await self.events(watcher):
                    if obj["metadata"].get("deletionTimestamp"):
                        await self._empty(obj["metadata"]["name"])
        finally:
            self.store.unwatch(watcher)

    async def _empty(self, namespace: str) -> None:
        try:
            self.store.mutate(self.kind, None, namespace, _terminating, subresource="status")
        except ApiError:
            return
        while True:
            left = 0
            for kind in self.cluster.registry:
                if not kind.namespaced or kind.version != _storage_version(self, kind):
                    continue
                for entry in list(self.store.scan(kind, namespace)):
                    left += 1
                    meta = entry.obj["metadata"]
                    if not meta.get("deletionTimestamp"):
                        try:
                            self.store.delete(kind, namespace, meta["name"])
                        except ApiError:
                            continue
            if left == 0:
                break
            await asyncio.sleep(0.05)
        try:
            self.store.mutate(self.kind, None, namespace, _finalized)
            self.store.delete(self.kind, None, namespace)
        except ApiError:
            return


def _storage_version(controller: NamespaceController, kind: Kind) -> str:
    first = controller.cluster.registry.by_kind(*kind.key)
    return first.version if first else kind.version


def _terminating(obj: Obj) -> None:
    obj.setdefault("status", {})["phase"] = "Terminating"


def _finalized(obj: Obj) -> None:
    obj.setdefault("spec", {})["finalizers"] = []
