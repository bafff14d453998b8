"""Kubernetes' PersistentVolume controller: binding claims to volumes, and unbinding.

Volumes go Pending -> Available -> Bound -> Released (-> Failed when their reclaim policy
cannot be carried out here); claims go Pending -> Bound (-> Lost). A pending claim binds
to the volume pre-bound to it (`spec.claimRef`, by name and maybe uid, as a provisioner or
a volume populator leaves it), else to the smallest Available volume that matches (class,
volume mode, access modes, size, label selector and, under WaitForFirstConsumer, the node
the scheduler selected); with no match it waits for a provisioner (`ExternalProvisioning`)
or for its first consumer (`WaitForFirstConsumer`).

The rebind a volume populator performs is the real controller's behaviour too: when a
volume bound to claim A gets its claimRef patched to claim B, B binds to it and A goes Lost
with the `ClaimMisbound` warning.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from shared.quantity import canonical
from sim.kube.controllers.queue import Item, QueueController
from sim.kube.controllers.volumes import (
    BETA_STORAGE_PROVISIONER,
    BIND_COMPLETED,
    BOUND_BY_CONTROLLER,
    PROVISIONED_BY,
    SELECTED_NODE,
    STORAGE_PROVISIONER,
    Obj,
    annotations_of,
    claim_ref,
    pending_claims,
    requested_bytes,
    set_annotation,
    size_bytes,
    volume_allows_node,
)
from sim.kube.kinds import Kind
from sim.kube.selectors import match_labels
from sim.kube.store import Change, Store, now

if TYPE_CHECKING:
    from sim.kube.cluster import Cluster

COMPONENT = "persistentvolume-controller"
WFFC = "WaitForFirstConsumer"


def _class_of(obj: Obj) -> str:
    return str(obj["spec"].get("storageClassName") or "")


def matches(claim: Obj, pv: Obj) -> bool:
    """A volume can serve a claim (ignoring whom it is bound to and where it is)."""
    spec, pv_spec = claim["spec"], pv["spec"]
    if _class_of(claim) != _class_of(pv):
        return False
    if spec.get("volumeMode", "Filesystem") != pv_spec.get("volumeMode", "Filesystem"):
        return False
    if not set(spec.get("accessModes") or []) <= set(pv_spec.get("accessModes") or []):
        return False
    capacity = (pv_spec.get("capacity") or {}).get("storage")
    if capacity is None or size_bytes(capacity) < requested_bytes(claim):
        return False
    return match_labels(spec.get("selector"), pv["metadata"].get("labels") or {})


class VolumeIndex:
    """The volumes a claim may bind: those whose claimRef names it, and the unclaimed ones.

    Kept up to date from the store's changes by its controller, so finding a claim's
    volume does not scan every volume of a cluster with thousands of them."""

    def __init__(self, store: Store, pvs: Kind) -> None:
        self.store = store
        self.pvs = pvs
        self._by_claim: dict[tuple[str, str], set[str]] = {}
        self._free: set[str] = set()
        self._keys: dict[str, tuple[str, str] | None] = {}

    def load(self) -> None:
        for entry in self.store.scan(self.pvs):
            self.update(entry.obj)

    def update(self, pv: Obj, deleted: bool = False) -> None:
        name = pv["metadata"]["name"]
        if name in self._keys:
            old = self._keys.pop(name)
            if old is None:
                self._free.discard(name)
            else:
                self._by_claim.get(old, set()).discard(name)
        if deleted:
            return
        ref = pv["spec"].get("claimRef")
        if ref:
            key = (ref.get("namespace") or "", ref.get("name") or "")
            self._by_claim.setdefault(key, set()).add(name)
            self._keys[name] = key
        else:
            self._free.add(name)
            self._keys[name] = None

    def candidates(self, claim: Obj) -> Iterator[Obj]:
        meta = claim["metadata"]
        names = sorted(self._by_claim.get((meta["namespace"], meta["name"]), ()))
        for name in [*names, *sorted(self._free)]:
            found = self.store.find(self.pvs, None, name)
            if found is not None:
                yield found.obj


def find_volume(
    index: VolumeIndex, cluster: Cluster, claim: Obj, node_name: str | None
) -> Obj | None:
    """The volume a pending claim should bind to: pre-bound first, else the smallest match."""
    meta = claim["metadata"]
    node = None
    if node_name:
        found = cluster.store.find(cluster.kind("nodes"), None, node_name)
        node = found.obj if found is not None else None
    best: Obj | None = None
    for pv in index.candidates(claim):
        ref = pv["spec"].get("claimRef")
        if ref:
            if (
                ref.get("namespace") == meta["namespace"]
                and ref.get("name") == meta["name"]
                and ref.get("uid") in (None, "", meta["uid"])
                and not pv["metadata"].get("deletionTimestamp")
            ):
                return pv
            continue
        if (pv.get("status") or {}).get("phase") != "Available":
            continue
        if pv["metadata"].get("deletionTimestamp") or not matches(claim, pv):
            continue
        if node is not None and not volume_allows_node(pv, node):
            continue
        if best is None or size_bytes(pv["spec"]["capacity"]["storage"]) < size_bytes(
            best["spec"]["capacity"]["storage"]
        ):
            best = pv
    return best


class Binder(QueueController):
    name = "binder"

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.pvcs = cluster.kind("persistentvolumeclaims")
        self.pvs = cluster.kind("persistentvolumes")
        self.classes = cluster.kind("storageclasses", "storage.k8s.io")
        self.index = VolumeIndex(self.store, self.pvs)
        #: The last waiting event told about each claim (uid -> reason/message), so a
        #: claim that keeps waiting is not told the same thing on every change.
        self._said: dict[str, str] = {}

    # -- work items ----------------------------------------------------------------------

    def interest(self, kind: Kind, change: Change) -> Iterable[Item]:
        obj = change.entry.obj
        name = obj["metadata"]["name"]
        if kind.key == self.pvcs.key:
            yield ("pvc", obj["metadata"]["namespace"], name)
            for claim in (obj, change.old):
                if claim is not None and claim["spec"].get("volumeName"):
                    yield ("pv", "", claim["spec"]["volumeName"])
            if change.type == "DELETED":
                self._said.pop(obj["metadata"]["uid"], None)
                for entry in self.store.scan(self.pvs):
                    ref = entry.obj["spec"].get("claimRef") or {}
                    if ref.get("uid") == obj["metadata"]["uid"]:
                        yield ("pv", "", entry.obj["metadata"]["name"])
        elif kind.key == self.pvs.key:
            self.index.update(obj, change.type == "DELETED")
            yield ("pv", "", name)
            for pv in (obj, change.old):
                ref = (pv or {}).get("spec", {}).get("claimRef")
                if ref and ref.get("name"):
                    yield ("pvc", ref.get("namespace") or "", ref["name"])
            if (obj.get("status") or {}).get("phase") == "Available":
                yield from pending_claims(self.store, self.pvcs)
        elif kind.key == self.classes.key:
            yield from pending_claims(self.store, self.pvcs)

    def initial(self) -> Iterable[Item]:
        self.index.load()
        for entry in self.store.scan(self.pvs):
            yield ("pv", "", entry.obj["metadata"]["name"])
        for entry in self.store.scan(self.pvcs):
            meta = entry.obj["metadata"]
            yield ("pvc", meta["namespace"], meta["name"])

    async def reconcile(self, item: Item) -> float | None:
        what, namespace, name = item
        if what == "pv":
            self._sync_volume(name)
        else:
            self._sync_claim(namespace, name)
        return None

    # -- volumes -------------------------------------------------------------------------

    def _sync_volume(self, name: str) -> None:
        entry = self.store.find(self.pvs, None, name)
        if entry is None:
            return
        pv = entry.obj
        phase = (pv.get("status") or {}).get("phase")
        ref = pv["spec"].get("claimRef")
        if not ref:
            self._volume_phase(name, "Available")
            return
        if not ref.get("uid"):
            # Pre-bound by name only: available to that one claim.
            self._volume_phase(name, "Available")
            self.enqueue(("pvc", ref.get("namespace") or "", ref.get("name") or ""))
            return
        found = self.store.find(self.pvcs, ref.get("namespace"), ref.get("name") or "")
        claim = found.obj if found is not None else None
        if claim is None or claim["metadata"]["uid"] != ref["uid"]:
            if phase not in ("Released", "Failed"):
                self._volume_phase(name, "Released")
            self._reclaim(pv)
            return
        volume_name = claim["spec"].get("volumeName")
        if not volume_name:
            # Bound on the volume's side only (a provisioner's or populator's claimRef):
            # the claim's sync completes the binding.
            self.enqueue(("pvc", claim["metadata"]["namespace"], claim["metadata"]["name"]))
        elif volume_name == name:
            self._volume_phase(name, "Bound")
        elif (
            annotations_of(pv).get(PROVISIONED_BY)
            and pv["spec"].get("persistentVolumeReclaimPolicy") == "Delete"
        ):
            # Provisioned for a claim that got bound elsewhere: not needed any more.
            self._volume_phase(name, "Released")
        elif annotations_of(pv).get(BOUND_BY_CONTROLLER):

            def unbind(obj: Obj) -> None:
                obj["spec"].pop("claimRef", None)
                annotations_of(obj).pop(BOUND_BY_CONTROLLER, None)

            self.store.mutate(self.pvs, None, name, unbind)
            self._volume_phase(name, "Available")

    def _reclaim(self, pv: Obj) -> None:
        """What happens to a Released volume; deletion of provisioned ones is theirs."""
        name = pv["metadata"]["name"]
        policy = pv["spec"].get("persistentVolumeReclaimPolicy", "Retain")
        if policy == "Retain" or annotations_of(pv).get(PROVISIONED_BY):
            return
        if policy == "Delete":
            message = (
                f'error getting deleter volume plugin for volume "{name}": '
                "no deletable volume plugin matched"
            )
        else:
            message = f'no volume plugin matched name: "{policy}"'
        if self._volume_phase(name, "Failed", message):
            self.cluster.record(pv, "Warning", "VolumeFailedDelete", message, COMPONENT)

    def _volume_phase(self, name: str, phase: str, message: str | None = None) -> bool:
        current = self.store.entry(self.pvs, None, name).obj
        if (current.get("status") or {}).get("phase") == phase:
            return False

        def change(obj: Obj) -> None:
            obj["status"] = {"phase": phase, "lastPhaseTransitionTime": now()}
            if message:
                obj["status"]["message"] = message

        self.store.mutate(self.pvs, None, name, change, subresource="status")
        return True

    # -- claims --------------------------------------------------------------------------

    def _sync_claim(self, namespace: str, name: str) -> None:
        entry = self.store.find(self.pvcs, namespace, name)
        if entry is None:
            return
        claim = entry.obj
        if annotations_of(claim).get(BIND_COMPLETED):
            self._sync_bound(claim)
        else:
            self._sync_unbound(claim)

    def _sync_bound(self, claim: Obj) -> None:
        volume_name = claim["spec"].get("volumeName")
        if not volume_name:
            self._lose(
                claim,
                "ClaimLost",
                "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
            )
            return
        found = self.store.find(self.pvs, None, volume_name)
        if found is None:
            self._lose(
                claim,
                "ClaimLost",
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
            )
            return
        ref = found.obj["spec"].get("claimRef")
        if ref is None or ref.get("uid") == claim["metadata"]["uid"]:
            self._bind(found.obj, claim)
        else:
            self._lose(
                claim,
                "ClaimMisbound",
                "Two claims are bound to the same volume, this one is bound incorrectly",
            )

    def _sync_unbound(self, claim: Obj) -> None:
        meta, spec = claim["metadata"], claim["spec"]
        volume_name = spec.get("volumeName")
        if volume_name:
            found = self.store.find(self.pvs, None, volume_name)
            if found is None:
                self._say(claim, "FailedBinding", f'volume "{volume_name}" not found')
                return
            ref = found.obj["spec"].get("claimRef")
            if ref and not (
                ref.get("namespace") == meta["namespace"]
                and ref.get("name") == meta["name"]
                and ref.get("uid") in (None, "", meta["uid"])
            ):
                self._say(
                    claim,
                    "FailedBinding",
                    f'volume "{volume_name}" already bound to a different claim.',
                )
                return
            if not matches(claim, found.obj):
                self._say(claim, "FailedBinding", "Cannot bind to requested volume: mismatch")
                return
            self._bind(found.obj, claim)
            return
        class_name = _class_of(claim)
        storage_class = None
        if class_name:
            found_class = self.store.find(self.classes, None, class_name)
            storage_class = found_class.obj if found_class is not None else None
        node = annotations_of(claim).get(SELECTED_NODE)
        waits = storage_class is not None and storage_class.get("volumeBindingMode") == WFFC
        held = find_volume(self.index, self.cluster, claim, None) if waits and not node else None
        if held is not None and (held["spec"].get("claimRef") or {}).get("name") == meta["name"]:
            # A volume pre-bound to the claim binds at once, consumer or not (the real
            # controller's FindMatchingVolume returns it before it skips delayed binding):
            # how a populator hands a filled static volume to a WaitForFirstConsumer claim.
            self._bind(held, claim)
            return
        if waits and not node:
            self._say(
                claim,
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding",
                "Normal",
            )
            return
        pv = find_volume(self.index, self.cluster, claim, node)
        if pv is not None:
            self._bind(pv, claim)
            return
        if not class_name:
            self._say(
                claim,
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set",
                "Normal",
            )
        elif storage_class is None:
            self._say(
                claim,
                "ProvisioningFailed",
                f'storageclass.storage.k8s.io "{class_name}" not found',
            )
        else:
            provisioner = str(storage_class.get("provisioner", ""))
            if annotations_of(claim).get(STORAGE_PROVISIONER) != provisioner:

                def mark(obj: Obj) -> None:
                    set_annotation(obj, STORAGE_PROVISIONER, provisioner)
                    set_annotation(obj, BETA_STORAGE_PROVISIONER, provisioner)

                claim = self.store.mutate(self.pvcs, meta["namespace"], meta["name"], mark)
            self._say(
                claim,
                "ExternalProvisioning",
                "Waiting for a volume to be created either by the external provisioner "
                f"'{provisioner}' or manually by the system administrator. If volume "
                "creation is delayed, please verify that the provisioner is running and "
                "correctly registered.",
                "Normal",
            )

    def _bind(self, pv: Obj, claim: Obj) -> None:
        """Bind both sides (one synchronous step: nothing can come in between)."""
        meta = claim["metadata"]
        pv_name = pv["metadata"]["name"]
        ref = pv["spec"].get("claimRef") or {}
        if ref.get("uid") != meta["uid"] or ref.get("name") != meta["name"]:

            def claim_volume(obj: Obj) -> None:
                obj["spec"]["claimRef"] = claim_ref(claim)
                set_annotation(obj, BOUND_BY_CONTROLLER, "yes")

            pv = self.store.mutate(self.pvs, None, pv_name, claim_volume)
        self._volume_phase(pv_name, "Bound")

        def bind_claim(obj: Obj) -> None:
            if not obj["spec"].get("volumeName"):
                obj["spec"]["volumeName"] = pv_name
                set_annotation(obj, BOUND_BY_CONTROLLER, "yes")
            set_annotation(obj, BIND_COMPLETED, "yes")

        self.store.mutate(self.pvcs, meta["namespace"], meta["name"], bind_claim)

        def bound_status(obj: Obj) -> None:
            status = obj.setdefault("status", {})
            status["phase"] = "Bound"
            status["accessModes"] = list(pv["spec"].get("accessModes") or [])
            status["capacity"] = {
                k: canonical(v) for k, v in (pv["spec"].get("capacity") or {}).items()
            }

        self.store.mutate(
            self.pvcs, meta["namespace"], meta["name"], bound_status, subresource="status"
        )
        self._said.pop(meta["uid"], None)

    def _lose(self, claim: Obj, reason: str, message: str) -> None:
        meta = claim["metadata"]
        if (claim.get("status") or {}).get("phase") == "Lost":
            return

        def lost(obj: Obj) -> None:
            obj.setdefault("status", {})["phase"] = "Lost"

        claim = self.store.mutate(
            self.pvcs, meta["namespace"], meta["name"], lost, subresource="status"
        )
        self.cluster.record(claim, "Warning", reason, message, COMPONENT)

    def _say(self, claim: Obj, reason: str, message: str, event_type: str = "Warning") -> None:
        uid = claim["metadata"]["uid"]
        if self._said.get(uid) != f"{reason}/{message}":
            self._said[uid] = f"{reason}/{message}"
            self.cluster.record(claim, event_type, reason, message, COMPONENT)
