"""What the storage controllers, the scheduler and the kubelet share about volumes.

Kubernetes quantities (parsed by ``shared.quantity``, re-exported here), the annotations
the PV controller and the external-provisioner write, and where a PersistentVolume's data
lives on this machine.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.quantity import quantity as quantity  # re-exported for the controllers
from shared.quantity import size_bytes as size_bytes
from sim.kube.config import HOSTPATH_PROVISIONER

if TYPE_CHECKING:
    from sim.kube.kinds import Kind
    from sim.kube.store import Store

Obj = dict[str, Any]

# Annotations of the PV controller (pkg/controller/volume/persistentvolume) and the
# external-provisioner (sig-storage-lib-external-provisioner).
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
HOSTNAME_LABEL = "kubernetes.io/hostname"


def requested_bytes(claim: Obj) -> int:
    return size_bytes(claim["spec"]["resources"]["requests"]["storage"])


def annotations_of(obj: Obj) -> dict[str, str]:
    result: dict[str, str] = obj["metadata"].get("annotations") or {}
    return result


def set_annotation(obj: Obj, key: str, value: str) -> None:
    obj["metadata"].setdefault("annotations", {})
    if obj["metadata"]["annotations"] is None:
        obj["metadata"]["annotations"] = {}
    obj["metadata"]["annotations"][key] = value


def backing_path(pv: Obj) -> Path | None:
    """Where a PersistentVolume's data is on this machine (hostPath or local volumes)."""
    spec = pv.get("spec") or {}
    for source in ("hostPath", "local"):
        path = (spec.get(source) or {}).get("path")
        if path:
            return Path(path)
    return None


def _term_allows(term: Obj, labels: dict[str, str], name: str) -> bool:
    for expr in term.get("matchExpressions") or []:
        if not _expression_allows(expr, labels.get(expr.get("key", ""))):
            return False
    for expr in term.get("matchFields") or []:
        value = name if expr.get("key") == "metadata.name" else None
        if not _expression_allows(expr, value):
            return False
    return True


def _expression_allows(expr: Obj, value: str | None) -> bool:
    op, values = expr.get("operator"), expr.get("values") or []
    if op == "In":
        return value in values
    if op == "NotIn":
        return value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and values:
        try:
            number, limit = int(value), int(values[0])
        except ValueError:
            return False
        return number > limit if op == "Gt" else number < limit
    return False


def selector_terms_allow(terms: list[Obj] | None, node: Obj) -> bool:
    """NodeSelectorTerms (ORed) against a node; no terms at all allow every node."""
    if not terms:
        return True
    labels = node["metadata"].get("labels") or {}
    return any(_term_allows(term, labels, node["metadata"]["name"]) for term in terms)


def volume_allows_node(pv: Obj, node: Obj) -> bool:
    """A PV's `spec.nodeAffinity.required` lets a pod using it run on `node`."""
    required = ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required")
    if not required:
        return True
    return selector_terms_allow(required.get("nodeSelectorTerms"), node)


def node_affinity(node_name: str) -> Obj:
    """The affinity a local volume on one node gets."""
    return {
        "required": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": HOSTNAME_LABEL, "operator": "In", "values": [node_name]}
                    ]
                }
            ]
        }
    }


def claim_ref(claim: Obj) -> Obj:
    meta = claim["metadata"]
    return {
        "kind": "PersistentVolumeClaim",
        "apiVersion": "v1",
        "namespace": meta["namespace"],
        "name": meta["name"],
        "uid": meta["uid"],
        "resourceVersion": meta["resourceVersion"],
    }


def is_populator_source(claim: Obj) -> bool:
    """A dataSourceRef that only a volume populator fills (not a PVC clone nor a snapshot)."""
    ref = (claim.get("spec") or {}).get("dataSourceRef")
    if not ref:
        return False
    group, kind = ref.get("apiGroup") or "", ref.get("kind")
    if group == "" and kind == "PersistentVolumeClaim":
        return False
    return not (group == "snapshot.storage.k8s.io" and kind == "VolumeSnapshot")


def pending_claims(store: Store, pvcs: Kind) -> Iterator[tuple[str, str, str]]:
    """Work items ("pvc", namespace, name) of every Pending claim."""
    for entry in store.scan(pvcs):
        meta = entry.obj["metadata"]
        if (entry.obj.get("status") or {}).get("phase") == "Pending":
            yield ("pvc", meta["namespace"], meta["name"])


def stored_on(volumes: Iterable[Obj], node: str) -> int:
    """Bytes of the hostpath provisioner's volumes on one node (local volumes)."""
    affinity = node_affinity(node)
    return sum(
        size_bytes(pv["spec"]["capacity"]["storage"])
        for pv in volumes
        if annotations_of(pv).get(PROVISIONED_BY) == HOSTPATH_PROVISIONER
        and pv["spec"].get("nodeAffinity") == affinity
    )
