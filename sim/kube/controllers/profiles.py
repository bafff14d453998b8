"""CDI's StorageProfile controller: one `cdi.kubevirt.io/v1beta1` StorageProfile per class.

A profile tells a client (Hoist, Forklift, CDI itself) which access and volume modes a
class supports, in `status.claimPropertySets`; the hostpath provisioner does Block and
Filesystem with ReadWriteOnce, a class CDI knows nothing about (the no-provisioner one)
gets an empty list, which clients must treat as "unknown", not guess. An administrator's
`spec.claimPropertySets` overrides what CDI would report, as in CDI.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sim.kube.config import HOSTPATH_PROVISIONER
from sim.kube.controllers.queue import Item, QueueController
from sim.kube.controllers.volumes import Obj
from sim.kube.errors import ApiError
from sim.kube.kinds import Kind
from sim.kube.store import Change

if TYPE_CHECKING:
    from sim.kube.cluster import Cluster

PROFILES = ("cdi.kubevirt.io", "StorageProfile")

#: What CDI's capabilities table would say per provisioner (Block first: preferred).
CAPABILITIES: dict[str, list[Obj]] = {
    HOSTPATH_PROVISIONER: [
        {"accessModes": ["ReadWriteOnce"], "volumeMode": "Block"},
        {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"},
    ],
}


class StorageProfiles(QueueController):
    name = "storageprofiles"

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.classes = cluster.kind("storageclasses", "storage.k8s.io")

    def _profiles(self) -> Kind | None:
        return self.cluster.registry.by_kind(*PROFILES)

    def interest(self, kind: Kind, change: Change) -> Iterable[Item]:
        if kind.key in (self.classes.key, PROFILES):
            yield ("class", "", change.entry.obj["metadata"]["name"])

    def initial(self) -> Iterable[Item]:
        names = {e.obj["metadata"]["name"] for e in self.store.scan(self.classes)}
        profiles = self._profiles()
        if profiles is not None:
            names |= {e.obj["metadata"]["name"] for e in self.store.scan(profiles)}
        for name in sorted(names):
            yield ("class", "", name)

    async def reconcile(self, item: Item) -> float | None:
        name = item[2]
        profiles = self._profiles()
        if profiles is None:
            return 1.0  # the CRD is not served yet
        storage_class = self.store.find(self.classes, None, name)
        profile = self.store.find(profiles, None, name)
        if storage_class is None:
            if profile is not None:
                with contextlib.suppress(ApiError):
                    self.store.delete(profiles, None, name)
            return None
        if profile is None:
            self.store.create(profiles, {"metadata": {"name": name}, "spec": {}})
            profile = self.store.entry(profiles, None, name)
        provisioner = str(storage_class.obj.get("provisioner", ""))
        wanted = (profile.obj.get("spec") or {}).get("claimPropertySets")
        status: Obj = {
            "provisioner": provisioner,
            "storageClass": name,
            "claimPropertySets": wanted or [dict(s) for s in CAPABILITIES.get(provisioner, [])],
        }

        def set_status(obj: Obj) -> None:
            obj["status"] = status

        self.store.mutate(profiles, None, name, set_status, subresource="status")
        return None
