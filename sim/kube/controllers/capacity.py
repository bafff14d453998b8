"""Storage capacity tracking: CSIStorageCapacity objects for the hostpath provisioner.

A CSI driver deployed with the external-provisioner's ``--enable-capacity`` publishes, per
StorageClass and topology segment, how much it can still provision and the largest volume
it accepts; the scheduler and capacity-aware clients (Hoist's planner, through the
inventory) read them rather than asking the driver. This controller publishes what the
simulator's provisioner enforces (``provisioning.py``), in ``kube-system``:

- ``csisc-<class>`` for each hostpath class with a limit in
  ``ClusterConfig.storage_capacity``: ``capacity`` = the limit minus what the provisioner's
  volumes of that class hold, ``maximumVolumeSize`` = the limit, ``nodeTopology`` empty (a
  class-wide pool every node reaches);
- ``csisc-<class>-<node>`` for each WaitForFirstConsumer hostpath class and each node with a
  ``NodeConfig.storage_capacity``: the node's free local storage (shared by every class,
  capped by the class's own free capacity when it has a limit), ``nodeTopology`` matching
  ``kubernetes.io/hostname: <node>``.

Objects follow volumes as they are provisioned and deleted (eventually, like the real
sidecar's polling), go when their class does, and come back if someone deletes them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from shared.quantity import binary_si, size_bytes
from sim.kube.config import HOSTPATH_PROVISIONER
from sim.kube.controllers.queue import Item, QueueController
from sim.kube.controllers.volumes import (
    HOSTNAME_LABEL,
    PROVISIONED_BY,
    Obj,
    annotations_of,
    stored_on,
)
from sim.kube.errors import ApiError
from sim.kube.kinds import Kind
from sim.kube.store import Change

if TYPE_CHECKING:
    from sim.kube.cluster import Cluster

NAMESPACE = "kube-system"
#: The labels the external-provisioner puts on the objects it manages; the driver's name is
#: the provisioner's with its "/" spelled "." (a label value cannot hold a slash).
DRIVER_LABEL = "csi.storage.k8s.io/drivername"
DRIVER = HOSTPATH_PROVISIONER.replace("/", ".")
MANAGED_BY_LABEL = "csi.storage.k8s.io/managed-by"
MANAGED_BY = "external-provisioner"


class CapacityPublisher(QueueController):
    name = "capacity"

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.classes = cluster.kind("storageclasses", "storage.k8s.io")
        self.pvs = cluster.kind("persistentvolumes")
        self.capacities = cluster.kind("csistoragecapacities", "storage.k8s.io")
        self.class_limits = dict(cluster.config.storage_capacity)
        self.node_limits = {
            n.name: n.storage_capacity
            for n in cluster.config.nodes
            if n.storage_capacity is not None
        }

    @property
    def tracking(self) -> bool:
        """Nothing has a limit: nothing to publish (and no work on every volume change)."""
        return bool(self.class_limits or self.node_limits)

    # -- work items ----------------------------------------------------------------------

    def interest(self, kind: Kind, change: Change) -> Iterable[Item]:
        if not self.tracking:
            return
        obj = change.entry.obj
        if kind.key == self.classes.key:
            yield ("class", "", obj["metadata"]["name"])
        elif kind.key == self.pvs.key:
            ours = [
                pv
                for pv in (obj, change.old)
                if pv is not None and annotations_of(pv).get(PROVISIONED_BY) == HOSTPATH_PROVISIONER
            ]
            if any(pv["spec"].get("local") for pv in ours):
                yield from self._all()  # a node's storage is shared by every class on it
            for pv in ours:
                if pv["spec"].get("storageClassName"):
                    yield ("class", "", pv["spec"]["storageClassName"])
        elif kind.key == self.capacities.key and _managed(obj):
            yield ("class", "", str(obj.get("storageClassName", "")))

    def initial(self) -> Iterable[Item]:
        if not self.tracking:
            return []
        names = set(self._all())
        names |= {
            ("class", "", str(e.obj.get("storageClassName", "")))
            for e in self.store.scan(self.capacities, NAMESPACE, _managed)
        }
        return sorted(names)

    def _all(self) -> Iterable[Item]:
        for entry in self.store.scan(self.classes):
            yield ("class", "", entry.obj["metadata"]["name"])

    # -- reconciling ---------------------------------------------------------------------

    async def reconcile(self, item: Item) -> float | None:
        class_name = item[2]
        wanted = self._wanted(class_name)
        for entry in list(self.store.scan(self.capacities, NAMESPACE, _managed)):
            obj = entry.obj
            name = obj["metadata"]["name"]
            if obj.get("storageClassName") != class_name:
                continue
            if name not in wanted:
                with contextlib.suppress(ApiError):
                    self.store.delete(self.capacities, NAMESPACE, name)
            elif any(
                obj.get(f) != wanted[name].get(f) for f in ("storageClassName", "nodeTopology")
            ):
                # Both are immutable: a changed topology is a new object.
                self.store.delete(self.capacities, NAMESPACE, name)
        for name, body in wanted.items():
            current = self.store.find(self.capacities, NAMESPACE, name)
            if current is None:
                self.store.create(self.capacities, body, NAMESPACE)
            else:

                def update(obj: Obj, body: Obj = body) -> None:
                    obj["capacity"] = body["capacity"]
                    obj["maximumVolumeSize"] = body["maximumVolumeSize"]
                    obj["metadata"].setdefault("labels", {}).update(body["metadata"]["labels"])

                self.store.mutate(self.capacities, NAMESPACE, name, update)
        return None

    def _wanted(self, class_name: str) -> dict[str, Obj]:
        """name -> the object that should exist for this class (none for a class that is
        gone or is not the hostpath provisioner's)."""
        found = self.store.find(self.classes, None, class_name)
        if found is None or found.obj.get("provisioner") != HOSTPATH_PROVISIONER:
            return {}
        volumes = [
            e.obj
            for e in self.store.scan(self.pvs)
            if annotations_of(e.obj).get(PROVISIONED_BY) == HOSTPATH_PROVISIONER
        ]
        wanted: dict[str, Obj] = {}
        limit = self.class_limits.get(class_name)
        free: int | None = None
        if limit is not None:
            used = sum(
                size_bytes(pv["spec"]["capacity"]["storage"])
                for pv in volumes
                if pv["spec"].get("storageClassName") == class_name
            )
            free = max(limit - used, 0)
            name = f"csisc-{class_name}"
            wanted[name] = _capacity(name, class_name, free, limit, {})
        if found.obj.get("volumeBindingMode") == "WaitForFirstConsumer":
            for node, node_limit in self.node_limits.items():
                node_free = max(node_limit - stored_on(volumes, node), 0)
                largest = node_limit
                if free is not None and limit is not None:
                    node_free, largest = min(node_free, free), min(node_limit, limit)
                name = f"csisc-{class_name}-{node}"
                topology = {"matchLabels": {HOSTNAME_LABEL: node}}
                wanted[name] = _capacity(name, class_name, node_free, largest, topology)
        return wanted


def _managed(obj: Obj) -> bool:
    labels = obj["metadata"].get("labels") or {}
    return bool(labels.get(MANAGED_BY_LABEL) == MANAGED_BY and labels.get(DRIVER_LABEL) == DRIVER)


def _capacity(name: str, class_name: str, free: int, largest: int, topology: Obj) -> Obj:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSIStorageCapacity",
        "metadata": {
            "name": name,
            "labels": {DRIVER_LABEL: DRIVER, MANAGED_BY_LABEL: MANAGED_BY},
        },
        "storageClassName": class_name,
        "nodeTopology": topology,
        "capacity": binary_si(free),
        "maximumVolumeSize": binary_si(largest),
    }
