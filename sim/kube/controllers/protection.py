"""Storage object in-use protection: a claim or volume in use is not deleted under a pod.

Kubernetes adds `kubernetes.io/pvc-protection` to every claim and `kubernetes.io/pv-protection`
to every volume when they are created (admission), and this controller removes the finalizer
only once a deleted claim is no longer used by a pod that may still run, or a deleted volume
is no longer bound. Hoist's cleanup meets exactly this on a real cluster: deleting a claim a
populator pod still mounts leaves it Terminating until the pod is gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from sim.kube.controllers.queue import Item, QueueController
from sim.kube.kinds import Kind
from sim.kube.store import Change, Obj

if TYPE_CHECKING:
    from sim.kube.cluster import Cluster

PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"


def _claims_of(pod: Obj) -> set[str]:
    return {
        v["persistentVolumeClaim"]["claimName"]
        for v in (pod.get("spec") or {}).get("volumes") or []
        if v.get("persistentVolumeClaim")
    }


def _drop(finalizer: str) -> Callable[[Obj], None]:
    def change(obj: Obj) -> None:
        left = [f for f in obj["metadata"].get("finalizers") or [] if f != finalizer]
        if left:
            obj["metadata"]["finalizers"] = left
        else:
            obj["metadata"].pop("finalizers", None)

    return change


class Protection(QueueController):
    name = "protection"

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.pods = cluster.kind("pods")
        self.pvcs = cluster.kind("persistentvolumeclaims")
        self.pvs = cluster.kind("persistentvolumes")
        self.store.admitters.append(self._protect)

    def _protect(self, kind: Kind, obj: Obj, old: Obj | None) -> None:
        """The admission half (StorageObjectInUseProtection): every new claim and volume."""
        if old is not None or kind.key not in (self.pvcs.key, self.pvs.key):
            return
        finalizer = PVC_PROTECTION if kind.key == self.pvcs.key else PV_PROTECTION
        finalizers = obj["metadata"].setdefault("finalizers", [])
        if finalizer not in finalizers:
            finalizers.append(finalizer)

    async def shutdown(self) -> None:
        if self._protect in self.store.admitters:
            self.store.admitters.remove(self._protect)
        await super().shutdown()

    def interest(self, kind: Kind, change: Change) -> Iterable[Item]:
        obj = change.entry.obj
        meta = obj["metadata"]
        if kind.key == self.pvcs.key and meta.get("deletionTimestamp"):
            yield ("pvc", meta["namespace"], meta["name"])
        elif kind.key == self.pvs.key and meta.get("deletionTimestamp"):
            yield ("pv", "", meta["name"])
        elif kind.key == self.pods.key:
            # A pod that ends or goes may release claims waiting for deletion.
            for claim in _claims_of(obj):
                yield ("pvc", meta["namespace"], claim)

    def initial(self) -> Iterable[Item]:
        for entry in self.store.scan(self.pvcs):
            meta = entry.obj["metadata"]
            if meta.get("deletionTimestamp"):
                yield ("pvc", meta["namespace"], meta["name"])
        for entry in self.store.scan(self.pvs):
            if entry.obj["metadata"].get("deletionTimestamp"):
                yield ("pv", "", entry.obj["metadata"]["name"])

    async def reconcile(self, item: Item) -> float | None:
        what, namespace, name = item
        if what == "pv":
            found = self.store.find(self.pvs, None, name)
            if found is None or not found.obj["metadata"].get("deletionTimestamp"):
                return None
            if (found.obj.get("status") or {}).get("phase") == "Bound":
                return None  # the binder's changes bring us back
            if PV_PROTECTION in (found.obj["metadata"].get("finalizers") or []):
                self.store.mutate(self.pvs, None, name, _drop(PV_PROTECTION))
            return None
        found = self.store.find(self.pvcs, namespace, name)
        if found is None or not found.obj["metadata"].get("deletionTimestamp"):
            return None
        if PVC_PROTECTION not in (found.obj["metadata"].get("finalizers") or []):
            return None
        for pod in self.store.scan(self.pods, namespace):
            phase = (pod.obj.get("status") or {}).get("phase")
            if phase not in ("Succeeded", "Failed") and name in _claims_of(pod.obj):
                return None  # still in use; the pod's end brings us back
        self.store.mutate(self.pvcs, namespace, name, _drop(PVC_PROTECTION))
        return None
