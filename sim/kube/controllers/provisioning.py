"""The dynamic provisioner of StorageClasses with provisioner `sim.hoist.io/hostpath`.

It behaves like a CSI driver behind the external-provisioner sidecar: it provisions a
pending claim of its class when no existing volume matches it (Immediate), or once the
scheduler has picked a node (`volume.kubernetes.io/selected-node`, WaitForFirstConsumer,
and then only on that node); it leaves claims whose `dataSourceRef` names a populator kind
to the populator (the AnyVolumeDataSource contract); it fails with a `ProvisioningFailed`
event and retries with backoff when capacity runs out or a fault says so; and it deletes
the data of a Released volume whose reclaim policy is Delete, then the volume.

A Filesystem volume is a directory under `storage_root`, a Block volume a sparse file of
the requested size; the PV points at it through `hostPath` (or `local` with node affinity
for volumes bound to one node).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from shared.quantity import canonical
from sim.kube.config import HOSTPATH_PROVISIONER
from sim.kube.controllers.binding import VolumeIndex, find_volume
from sim.kube.controllers.queue import Item, QueueController
from sim.kube.controllers.volumes import (
    BETA_STORAGE_PROVISIONER,
    PROVISIONED_BY,
    SELECTED_NODE,
    STORAGE_PROVISIONER,
    Obj,
    annotations_of,
    backing_path,
    claim_ref,
    is_populator_source,
    node_affinity,
    pending_claims,
    requested_bytes,
    set_annotation,
    size_bytes,
    stored_on,
)
from sim.kube.kinds import Kind
from sim.kube.store import Change

if TYPE_CHECKING:
    from sim.kube.cluster import Cluster

log = logging.getLogger(__name__)

POPULATORS = ("populator.storage.k8s.io", "VolumePopulator")
UNRECOGNIZED = "The datasource for this PVC does not match any registered VolumePopulator"


class ProvisioningError(Exception):
    """Provisioning failed for now; the claim stays Pending and is retried."""


class Provisioner(QueueController):
    name = "provisioner"
    component = HOSTPATH_PROVISIONER

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.pvcs = cluster.kind("persistentvolumeclaims")
        self.pvs = cluster.kind("persistentvolumes")
        self.classes = cluster.kind("storageclasses", "storage.k8s.io")
        self.root = Path(cluster.config.storage_root)
        self.index = VolumeIndex(self.store, self.pvs)
        #: Volumes deleted from the store, kept until their data is removed.
        self._gone: dict[str, Obj] = {}
        #: Claims warned about an unregistered data source kind (uid).
        self._warned: set[str] = set()
        #: Claims that failed to provision (retried when capacity may have been freed).
        self._failing: set[Item] = set()

    # -- work items ----------------------------------------------------------------------

    def interest(self, kind: Kind, change: Change) -> Iterable[Item]:
        obj = change.entry.obj
        meta = obj["metadata"]
        if kind.key == self.pvcs.key:
            yield ("pvc", meta["namespace"], meta["name"])
        elif kind.key == self.pvs.key:
            self.index.update(obj, change.type == "DELETED")
            yield ("pv", "", meta["name"])
            if change.type == "DELETED":
                self._gone[meta["name"]] = obj
                yield from self._failing
        elif kind.key in (self.classes.key, POPULATORS):
            yield from pending_claims(self.store, self.pvcs)

    def initial(self) -> Iterable[Item]:
        self.index.load()
        yield from pending_claims(self.store, self.pvcs)
        for entry in self.store.scan(self.pvs):
            yield ("pv", "", entry.obj["metadata"]["name"])

    async def reconcile(self, item: Item) -> float | None:
        what, namespace, name = item
        if what == "pv":
            self._reclaim(name)
            return None
        try:
            await self._provision(namespace, name)
        except ProvisioningError:
            self._failing.add(item)
            return self.backoff(item)
        self._failing.discard(item)
        return None

    # -- provisioning --------------------------------------------------------------------

    def _wanted(self, namespace: str, name: str) -> tuple[Obj, Obj] | None:
        """The claim and its class, when this provisioner is to provision the claim now."""
        entry = self.store.find(self.pvcs, namespace, name)
        if entry is None:
            return None
        claim = entry.obj
        spec = claim["spec"]
        if is_populator_source(claim):
            self._check_populator(claim)
            return None
        if (
            claim["metadata"].get("deletionTimestamp")
            or spec.get("volumeName")
            or (claim.get("status") or {}).get("phase", "Pending") != "Pending"
        ):
            return None
        class_name = spec.get("storageClassName")
        found = self.store.find(self.classes, None, class_name) if class_name else None
        if found is None or found.obj.get("provisioner") != HOSTPATH_PROVISIONER:
            return None
        storage_class = found.obj
        node = annotations_of(claim).get(SELECTED_NODE)
        if storage_class.get("volumeBindingMode") == "WaitForFirstConsumer" and not node:
            return None
        if self.store.find(self.pvs, None, f"pvc-{claim['metadata']['uid']}") is not None:
            return None
        if find_volume(self.index, self.cluster, claim, node) is not None:
            return None  # an existing volume matches: the binder binds it instead
        return claim, storage_class

    def _check_populator(self, claim: Obj) -> None:
        """The data-source validator's warning for a kind no VolumePopulator registers."""
        uid = claim["metadata"]["uid"]
        if uid in self._warned:
            return
        ref = claim["spec"]["dataSourceRef"]
        kind = self.cluster.registry.by_kind(*POPULATORS)
        registered = kind is not None and any(
            (e.obj.get("sourceKind") or {}).get("kind") == ref.get("kind")
            and (e.obj.get("sourceKind") or {}).get("group", "") == (ref.get("apiGroup") or "")
            for e in self.store.scan(kind)
        )
        if not registered:
            self._warned.add(uid)
            self.cluster.record(
                claim,
                "Warning",
                "UnrecognizedDataSourceKind",
                UNRECOGNIZED,
                "volume-data-source-validator",
            )

    async def _provision(self, namespace: str, name: str) -> None:
        wanted = self._wanted(namespace, name)
        if wanted is None:
            return
        claim, storage_class = wanted
        class_name = storage_class["metadata"]["name"]

        def mark(obj: Obj) -> None:
            set_annotation(obj, STORAGE_PROVISIONER, HOSTPATH_PROVISIONER)
            set_annotation(obj, BETA_STORAGE_PROVISIONER, HOSTPATH_PROVISIONER)

        claim = self.store.mutate(self.pvcs, namespace, name, mark)
        self.cluster.record(
            claim,
            "Normal",
            "Provisioning",
            f'External provisioner is provisioning volume for claim "{namespace}/{name}"',
            self.component,
        )
        fault = self.cluster.faults.for_class(class_name)
        if fault is not None and fault.delay > 0:
            await asyncio.sleep(fault.delay)
            wanted = self._wanted(namespace, name)
            if wanted is None:
                return
            claim, storage_class = wanted
        try:
            if fault is not None and fault.fail:
                raise ProvisioningError(fault.fail)
            self._check_capacity(claim, class_name)
            source = await self._clone_source(claim)
            pv = await self._create_volume(claim, storage_class, source)
        except ProvisioningError as exc:
            current = self.store.find(self.pvcs, namespace, name)
            if current is not None:
                self.cluster.record(
                    current.obj,
                    "Warning",
                    "ProvisioningFailed",
                    f'failed to provision volume with StorageClass "{class_name}": {exc}',
                    self.component,
                )
            raise
        self.cluster.record(
            claim,
            "Normal",
            "ProvisioningSucceeded",
            f"Successfully provisioned volume {pv['metadata']['name']}",
            self.component,
        )

    def _provisioned(self) -> Iterable[Obj]:
        for entry in self.store.scan(self.pvs):
            if annotations_of(entry.obj).get(PROVISIONED_BY) == HOSTPATH_PROVISIONER:
                yield entry.obj
        yield from self._gone.values()

    def _check_capacity(self, claim: Obj, class_name: str) -> None:
        size = requested_bytes(claim)
        limit = self.cluster.config.storage_capacity.get(class_name)
        if limit is not None:
            used = sum(
                size_bytes(pv["spec"]["capacity"]["storage"])
                for pv in self._provisioned()
                if pv["spec"].get("storageClassName") == class_name
            )
            if used + size > limit:
                raise ProvisioningError(
                    "rpc error: code = ResourceExhausted desc = insufficient capacity in "
                    f"storage class {class_name}: requested {size} bytes, "
                    f"{max(limit - used, 0)} available"
                )
        node = annotations_of(claim).get(SELECTED_NODE)
        if node is None:
            return
        config = next((n for n in self.cluster.config.nodes if n.name == node), None)
        if config is None:
            raise ProvisioningError(f'rpc error: code = NotFound desc = node "{node}" not found')
        if config.storage_capacity is None:
            return
        used = stored_on(self._provisioned(), node)
        if used + size > config.storage_capacity:
            self._reschedule(claim)
            raise ProvisioningError(
                "rpc error: code = ResourceExhausted desc = insufficient capacity on node "
                f"{node}: requested {size} bytes, {max(config.storage_capacity - used, 0)} "
                "available"
            )

    def _reschedule(self, claim: Obj) -> None:
        """The node cannot hold the volume: drop `selected-node` so the scheduler picks
        again (the external-provisioner's answer to ResourceExhausted under WFFC)."""

        def forget(obj: Obj) -> None:
            annotations_of(obj).pop(SELECTED_NODE, None)

        meta = claim["metadata"]
        self.store.mutate(self.pvcs, meta["namespace"], meta["name"], forget)

    async def _clone_source(self, claim: Obj) -> Path | None:
        """For a clone (dataSourceRef to a PVC), the data of the source volume."""
        ref = claim["spec"].get("dataSourceRef")
        if ref and ref.get("kind") == "VolumeSnapshot":
            name = ref.get("name")
            raise ProvisioningError(
                f"error getting handle for DataSource Type VolumeSnapshot by Name {name}: "
                f"error getting snapshot {name} from api server: "
                f'volumesnapshots.snapshot.storage.k8s.io "{name}" not found'
            )
        if not ref or ref.get("kind") != "PersistentVolumeClaim" or ref.get("apiGroup"):
            return None
        namespace = ref.get("namespace") or claim["metadata"]["namespace"]
        source = self.store.find(self.pvcs, namespace, ref["name"])
        if source is None or not source.obj["spec"].get("volumeName"):
            raise ProvisioningError(f"source PVC {namespace}/{ref['name']} is not bound yet")
        if source.obj["spec"].get("volumeMode") != claim["spec"].get("volumeMode"):
            raise ProvisioningError("the source and target volume modes differ")
        if requested_bytes(source.obj) > requested_bytes(claim):
            raise ProvisioningError("the requested size is smaller than the source")
        pv = self.store.find(self.pvs, None, source.obj["spec"]["volumeName"])
        path = backing_path(pv.obj) if pv is not None else None
        if path is None:
            raise ProvisioningError(f"source PVC {namespace}/{ref['name']} has no data here")
        return path

    async def _create_volume(self, claim: Obj, storage_class: Obj, source: Path | None) -> Obj:
        meta, spec = claim["metadata"], claim["spec"]
        name = f"pvc-{meta['uid']}"
        size = requested_bytes(claim)
        block = spec.get("volumeMode") == "Block"
        path = self.root / (f"{name}.img" if block else name)
        node = annotations_of(claim).get(SELECTED_NODE)
        await asyncio.to_thread(_make_backing, path, size, block, source)
        # The claim may have gone while the data was written (to_thread yields).
        current = self.store.find(self.pvcs, meta["namespace"], meta["name"])
        if current is None or current.obj["metadata"]["uid"] != meta["uid"]:
            _remove_backing(self.root, path)
            raise ProvisioningError("the claim was deleted")
        pv_spec: Obj = {
            "capacity": {"storage": canonical(spec["resources"]["requests"]["storage"])},
            "accessModes": list(spec["accessModes"]),
            "volumeMode": spec.get("volumeMode", "Filesystem"),
            "storageClassName": storage_class["metadata"]["name"],
            "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy", "Delete"),
            "claimRef": claim_ref(current.obj),
        }
        if storage_class.get("mountOptions"):
            pv_spec["mountOptions"] = list(storage_class["mountOptions"])
        if node:
            pv_spec["local"] = {"path": str(path)}
            pv_spec["nodeAffinity"] = node_affinity(node)
        else:
            pv_spec["hostPath"] = {"path": str(path), "type": "File" if block else "Directory"}
        try:
            return self.store.create(
                self.pvs,
                {
                    "metadata": {
                        "name": name,
                        "annotations": {PROVISIONED_BY: HOSTPATH_PROVISIONER},
                    },
                    "spec": pv_spec,
                },
            )
        except Exception:
            _remove_backing(self.root, path)
            raise

    # -- reclaiming ----------------------------------------------------------------------

    def _reclaim(self, name: str) -> None:
        entry = self.store.find(self.pvs, None, name)
        if entry is None:
            gone = self._gone.pop(name, None)
            if gone is not None and _ours_to_delete(gone):
                _remove_backing(self.root, backing_path(gone))
            return
        pv = entry.obj
        if _ours_to_delete(pv) and (pv.get("status") or {}).get("phase") == "Released":
            # Delete the data first: a volume object that is gone promises its data is too.
            _remove_backing(self.root, backing_path(pv))
            self.store.delete(self.pvs, None, name)


def _ours_to_delete(pv: Obj) -> bool:
    return (
        annotations_of(pv).get(PROVISIONED_BY) == HOSTPATH_PROVISIONER
        and pv["spec"].get("persistentVolumeReclaimPolicy") == "Delete"
    )


def _make_backing(path: Path, size: int, block: bool, source: Path | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if block:
        with path.open("wb") as f:
            if source is not None:
                with source.open("rb") as src:
                    shutil.copyfileobj(src, f, 1 << 20)
            f.truncate(size)
    else:
        path.mkdir(mode=0o777, exist_ok=True)
        path.chmod(0o777)
        if source is not None:
            shutil.copytree(source, path, dirs_exist_ok=True, symlinks=True)


def _remove_backing(root: Path, path: Path | None) -> None:
    """Remove a volume's data, but never anything outside the storage root."""
    if path is None:
        return
    root, target = root.resolve(), path.resolve()
    if target == root or root not in target.parents:
        log.warning("not removing %s: outside the storage root %s", path, root)
        return
    if target.is_dir():
        shutil.rmtree(target, ignore_errors=True)
    else:
        target.unlink(missing_ok=True)
