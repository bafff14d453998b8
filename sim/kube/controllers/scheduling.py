"""The default scheduler: puts each pending pod on one of the simulated nodes.

Filters as kube-scheduler's default plugins do where Hoist can notice: node
unschedulable, nodeSelector and required node affinity, pod count and cpu/memory requests
against the node's allocatable, the node affinity of the volumes the pod's claims are bound
to, and for unbound WaitForFirstConsumer claims whether the node can get a volume (static
classes need an Available volume the node may use, the hostpath class enough free storage
on the node). Of the nodes left it takes the least
loaded. A pod with unbound WaitForFirstConsumer claims is bound only after those claims:
the scheduler writes `volume.kubernetes.io/selected-node` on them and waits for the
provisioner or the PV controller. A pod that names its node itself (`spec.nodeName`) never
comes here, which is why such a pod never triggers a WaitForFirstConsumer claim.

A pod that fits nowhere gets the PodScheduled=False/Unschedulable condition and a
`FailedScheduling` event, and is looked at again whenever nodes, pods or storage change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING

from sim.kube.config import HOSTPATH_PROVISIONER
from sim.kube.controllers.binding import WFFC, matches
from sim.kube.controllers.queue import Item, QueueController
from sim.kube.controllers.volumes import (
    SELECTED_NODE,
    Obj,
    annotations_of,
    quantity,
    requested_bytes,
    selector_terms_allow,
    set_annotation,
    stored_on,
    volume_allows_node,
)
from sim.kube.kinds import Kind
from sim.kube.store import Change, now

if TYPE_CHECKING:
    from sim.kube.cluster import Cluster

COMPONENT = "default-scheduler"
TERMINAL = ("Succeeded", "Failed")


class Unschedulable(Exception):
    """The pod cannot be placed now; the message is what the user sees."""


def pod_requests(pod: Obj) -> dict[str, Decimal]:
    total: dict[str, Decimal] = {"cpu": Decimal(0), "memory": Decimal(0)}
    for container in pod["spec"].get("containers") or []:
        requests = (container.get("resources") or {}).get("requests") or {}
        for resource in total:
            if resource in requests:
                total[resource] += quantity(requests[resource])
    return total


def _message(nodes: int, detail: str, *, victims: bool) -> str:
    """kube-scheduler's FailedScheduling message, preemption verdict included."""
    preemption = (
        "No preemption victims found for incoming pod"
        if victims
        else "Preemption is not helpful for scheduling"
    )
    return (
        f"0/{nodes} nodes are available: {detail}. "
        f"preemption: 0/{nodes} nodes are available: {nodes} {preemption}."
    )


def _waiting(pod: Obj) -> bool:
    meta, spec = pod["metadata"], pod["spec"]
    return (
        not spec.get("nodeName")
        and spec.get("schedulerName", "default-scheduler") == "default-scheduler"
        and not meta.get("deletionTimestamp")
        and (pod.get("status") or {}).get("phase", "Pending") == "Pending"
    )


class Scheduler(QueueController):
    name = "scheduler"

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.pods = cluster.kind("pods")
        self.nodes = cluster.kind("nodes")
        self.pvcs = cluster.kind("persistentvolumeclaims")
        self.pvs = cluster.kind("persistentvolumes")
        self.classes = cluster.kind("storageclasses", "storage.k8s.io")
        #: Local storage per node (CSIStorageCapacity, in effect) for WFFC volumes.
        self.capacity = {n.name: n.storage_capacity for n in cluster.config.nodes}
        #: Pods waiting to be scheduled (an ordered set).
        self._waiting: dict[Item, None] = {}
        #: Pods on a node and not finished -> (node, requests), and the sums per node.
        self._placed: dict[Item, tuple[str, dict[str, Decimal]]] = {}
        self._load: Counter[str] = Counter()
        self._used: dict[str, dict[str, Decimal]] = {}
        #: Waiting pods by the claims they use, and the other way round.
        self._users: dict[tuple[str, str], set[Item]] = {}
        self._claims_of: dict[Item, list[tuple[str, str]]] = {}

    # -- work items ----------------------------------------------------------------------

    def interest(self, kind: Kind, change: Change) -> Iterable[Item]:
        obj = change.entry.obj
        if kind.key == self.pods.key:
            self._track(obj, change.type == "DELETED")
            if _waiting(obj):
                yield ("pod", obj["metadata"]["namespace"], obj["metadata"]["name"])
            elif obj["spec"].get("nodeName") and (
                change.type == "DELETED" or (obj.get("status") or {}).get("phase") in TERMINAL
            ):
                yield from self._waiting  # room was freed
        elif kind.key == self.nodes.key:
            yield from self._waiting
        elif kind.key == self.pvcs.key:
            # Only the pods that use this claim can be helped by its change.
            yield from self._users.get((obj["metadata"]["namespace"], obj["metadata"]["name"]), ())
        elif kind.key == self.pvs.key:
            if (obj.get("status") or {}).get("phase") == "Available":
                for users in list(self._users.values()):
                    yield from users  # a volume to bind: any claim might fit it
            for pv in (obj, change.old):
                ref = (pv or {}).get("spec", {}).get("claimRef") or {}
                yield from self._users.get((ref.get("namespace", ""), ref.get("name", "")), ())

    def initial(self) -> Iterable[Item]:
        for entry in self.store.scan(self.pods):
            self._track(entry.obj, False)
        return list(self._waiting)

    def _track(self, pod: Obj, deleted: bool) -> None:
        """Keep the index of waiting pods and what each node runs (pods, requests)."""
        meta = pod["metadata"]
        item = ("pod", meta["namespace"], meta["name"])
        old = self._placed.pop(item, None)
        if old is not None:
            node, requests = old
            self._load[node] -= 1
            for resource, amount in requests.items():
                self._used[node][resource] -= amount
        self._waiting.pop(item, None)
        for key in self._claims_of.pop(item, ()):
            users = self._users.get(key, set())
            users.discard(item)
            if not users:
                self._users.pop(key, None)
        if deleted:
            return
        if _waiting(pod):
            self._waiting[item] = None
            keys = [
                (meta["namespace"], v["persistentVolumeClaim"].get("claimName", ""))
                for v in pod["spec"].get("volumes") or []
                if v.get("persistentVolumeClaim")
            ]
            if keys:
                self._claims_of[item] = keys
                for key in keys:
                    self._users.setdefault(key, set()).add(item)
        node = pod["spec"].get("nodeName")
        if node and (pod.get("status") or {}).get("phase") not in TERMINAL:
            requests = pod_requests(pod)
            self._placed[item] = (node, requests)
            self._load[node] += 1
            total = self._used.setdefault(node, {"cpu": Decimal(0), "memory": Decimal(0)})
            for resource, amount in requests.items():
                total[resource] += amount

    async def reconcile(self, item: Item) -> float | None:
        _, namespace, name = item
        entry = self.store.find(self.pods, namespace, name)
        if entry is None or not _waiting(entry.obj):
            return None
        pod = entry.obj
        try:
            node, unbound = self._place(pod)
        except Unschedulable as exc:
            self._unschedulable(pod, str(exc))
            return None
        if unbound:
            # Let the claims bind on that node first (the scheduler's volume binder).
            for claim in unbound:
                if annotations_of(claim).get(SELECTED_NODE) != node:

                    def select(obj: Obj, node: str = node) -> None:
                        set_annotation(obj, SELECTED_NODE, node)

                    self.store.mutate(self.pvcs, namespace, claim["metadata"]["name"], select)
            return None
        self._bind(pod, node)
        return None

    # -- placing -------------------------------------------------------------------------

    def _claims(self, pod: Obj) -> tuple[list[Obj], list[Obj]]:
        """The volumes of the pod's bound claims, and its unbound WFFC claims."""
        namespace = pod["metadata"]["namespace"]
        volumes: list[Obj] = []
        unbound: list[Obj] = []
        for volume in pod["spec"].get("volumes") or []:
            source = volume.get("persistentVolumeClaim")
            if not source:
                continue
            name = source.get("claimName", "")
            found = self.store.find(self.pvcs, namespace, name)
            if found is None:
                raise Unschedulable(f'persistentvolumeclaim "{name}" not found')
            claim = found.obj
            if claim["metadata"].get("deletionTimestamp"):
                raise Unschedulable(f'persistentvolumeclaim "{name}" is being deleted')
            volume_name = claim["spec"].get("volumeName")
            if volume_name and (claim.get("status") or {}).get("phase") == "Bound":
                pv = self.store.find(self.pvs, None, volume_name)
                if pv is None:
                    raise Unschedulable(
                        f'persistentvolumeclaim "{name}" bound to non-existent '
                        f'persistentvolume "{volume_name}"'
                    )
                volumes.append(pv.obj)
                continue
            class_name = claim["spec"].get("storageClassName") or ""
            storage_class = self.store.find(self.classes, None, class_name) if class_name else None
            delayed = (
                storage_class is not None and storage_class.obj.get("volumeBindingMode") == WFFC
            )
            if not delayed or volume_name:
                # The real scheduler's words, also for a claim pre-bound to a volume the
                # PV controller has not bound yet ("treated as unbound immediate binding").
                raise Unschedulable("pod has unbound immediate PersistentVolumeClaims")
            unbound.append(claim)
        return volumes, unbound

    def _place(self, pod: Obj) -> tuple[str, list[Obj]]:
        nodes = sorted(self.store.scan(self.nodes), key=lambda e: e.obj["metadata"]["name"])
        try:
            volumes, unbound = self._claims(pod)
        except Unschedulable as exc:
            raise Unschedulable(_message(len(nodes), str(exc), victims=False)) from None
        wanted = pod_requests(pod)
        load, used = self._load, self._used
        selected = {annotations_of(c).get(SELECTED_NODE) for c in unbound} - {None}
        reasons: Counter[str] = Counter()
        feasible: list[str] = []
        for entry in nodes:
            node = entry.obj
            reason = self._misfit(pod, node, volumes, unbound, load, used, wanted)
            if reason is None and selected and node["metadata"]["name"] not in selected:
                reason = "node(s) didn't match the node selected for its volumes"
            if reason is None:
                feasible.append(node["metadata"]["name"])
            else:
                reasons[reason] += 1
        if not feasible:
            detail = ", ".join(f"{count} {why}" for why, count in sorted(reasons.items()))
            resources = all(why.startswith(("Insufficient", "Too many")) for why in reasons)
            raise Unschedulable(_message(len(nodes), detail, victims=resources))
        best = min(feasible, key=lambda n: (load[n], n))
        return best, [c for c in unbound if not c["spec"].get("volumeName")]

    def _misfit(
        self,
        pod: Obj,
        node: Obj,
        volumes: list[Obj],
        unbound: list[Obj],
        load: Counter[str],
        used: dict[str, dict[str, Decimal]],
        wanted: dict[str, Decimal],
    ) -> str | None:
        """Why the pod cannot go to this node (None: it can)."""
        name = node["metadata"]["name"]
        spec = pod["spec"]
        if node["spec"].get("unschedulable"):
            return "node(s) were unschedulable"
        labels = node["metadata"].get("labels") or {}
        if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
            return "node(s) didn't match Pod's node affinity/selector"
        required = (
            ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
                "requiredDuringSchedulingIgnoredDuringExecution"
            )
            or {}
        ).get("nodeSelectorTerms")
        if required and not selector_terms_allow(required, node):
            return "node(s) didn't match Pod's node affinity/selector"
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        if load[name] + 1 > int(allocatable.get("pods", 110)):
            return "Too many pods"
        for resource in ("cpu", "memory"):
            if resource in allocatable and wanted[resource] > 0:
                taken = used.get(name, {}).get(resource, Decimal(0))
                if taken + wanted[resource] > quantity(allocatable[resource]):
                    return f"Insufficient {resource}"
        if any(not volume_allows_node(pv, node) for pv in volumes):
            return "node(s) had volume node affinity conflict"
        wanted_here = 0
        for claim in unbound:
            provisioner = self._provisioner(claim)
            if provisioner == HOSTPATH_PROVISIONER:
                wanted_here += requested_bytes(claim)
            elif not self._static_volume_for(claim, node):
                return "node(s) didn't find available persistent volumes to bind"
        capacity = self.capacity.get(name)
        if wanted_here and capacity is not None:
            stored = stored_on((e.obj for e in self.store.scan(self.pvs)), name)
            if stored + wanted_here > capacity:
                return "node(s) did not have enough free storage"
        return None

    def _provisioner(self, claim: Obj) -> str:
        class_name = claim["spec"].get("storageClassName") or ""
        storage_class = self.store.find(self.classes, None, class_name)
        return str(storage_class.obj.get("provisioner", "")) if storage_class else ""

    def _static_volume_for(self, claim: Obj, node: Obj) -> bool:
        """A no-provisioner claim can only bind an existing volume the node may use."""
        for entry in self.store.scan(self.pvs):
            pv = entry.obj
            ref = pv["spec"].get("claimRef")
            if ref and ref.get("uid") == claim["metadata"]["uid"]:
                return volume_allows_node(pv, node)
            if (
                not ref
                and (pv.get("status") or {}).get("phase") == "Available"
                and matches(claim, pv)
                and volume_allows_node(pv, node)
            ):
                return True
        return False

    # -- outcomes ------------------------------------------------------------------------

    def _bind(self, pod: Obj, node: str) -> None:
        meta = pod["metadata"]
        namespace, name = meta["namespace"], meta["name"]

        def assign(obj: Obj) -> None:
            obj["spec"]["nodeName"] = node

        # What `POST pods/binding` does on a real API server.
        pod = self.store.mutate(self.pods, namespace, name, assign, subresource="binding")
        self._condition(namespace, name, "True", None, None)
        self.cluster.record(
            pod,
            "Normal",
            "Scheduled",
            f"Successfully assigned {namespace}/{name} to {node}",
            COMPONENT,
        )

    def _unschedulable(self, pod: Obj, message: str) -> None:
        meta = pod["metadata"]
        for condition in (pod.get("status") or {}).get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("message") == message:
                return  # already told
        self._condition(meta["namespace"], meta["name"], "False", "Unschedulable", message)
        self.cluster.record(pod, "Warning", "FailedScheduling", message, COMPONENT)

    def _condition(
        self, namespace: str, name: str, status: str, reason: str | None, message: str | None
    ) -> None:
        def change(obj: Obj) -> None:
            conditions = [
                c
                for c in (obj.setdefault("status", {}).get("conditions") or [])
                if c.get("type") != "PodScheduled"
            ]
            condition: Obj = {
                "type": "PodScheduled",
                "status": status,
                "lastProbeTime": None,
                "lastTransitionTime": now(),
            }
            if reason:
                condition["reason"] = reason
            if message:
                condition["message"] = message
            obj["status"]["conditions"] = [condition, *conditions]

        self.store.mutate(self.pods, namespace, name, change, subresource="status")
