"""Labels and annotations of the Kubernetes objects Hoist creates, spelled once.

The orchestrator (a later issue) **must** put these on every populator pod it (or the
populator controller, from the pod template it is given) creates: the progress service finds
populator pods after a restart by watching pods with ``hoist.io/disk`` in the cluster Hoist
runs in, and reads from the annotations everything the ``populator.pod.started`` event would
have told it. A pod without them is invisible to that watch (the event alone still works).

Labels are for selection (short values: ids); annotations carry the rest (numbers, UIDs).
"""

from __future__ import annotations

from collections.abc import Mapping

PREFIX = "hoist.io/"

# --- labels (selectable) ----------------------------------------------------------------
PLAN = "hoist.io/plan"
MIGRATION = "hoist.io/migration"
VM = "hoist.io/vm"
DISK = "hoist.io/disk"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_HOIST = "hoist"

# --- annotations (what discovery needs besides the labels) ------------------------------
OWNER_UID = "hoist.io/owner-uid"
"""UID of the user PVC: the ``ownerUID`` label of the pod's metrics."""
METRICS_PORT = "hoist.io/metrics-port"
METRICS_SCHEME = "hoist.io/metrics-scheme"
TOTAL_BYTES = "hoist.io/total-bytes"
CLUSTER = "hoist.io/cluster"
"""Target provider id (the cluster the pod runs in), as in ``populator.pod.started``."""
POPULATOR_KIND = "hoist.io/populator-kind"

POPULATOR_POD_SELECTOR = f"{MANAGED_BY}={MANAGED_BY_HOIST},{DISK}"
"""Label selector of every populator pod Hoist started."""


def populator_pod_labels(
    plan_id: str, migration_id: str, vm_id: str, disk_id: str
) -> dict[str, str]:
    """Labels of a populator pod (ids are DNS-1123 labels or UUIDs, valid label values)."""
    return {
        MANAGED_BY: MANAGED_BY_HOIST,
        PLAN: plan_id,
        MIGRATION: migration_id,
        VM: vm_id,
        DISK: disk_id,
    }


def populator_pod_annotations(
    *,
    cluster_id: str,
    owner_uid: str,
    total_bytes: int,
    populator_kind: str,
    metrics_port: int = 8443,
    metrics_scheme: str = "https",
) -> dict[str, str]:
    return {
        CLUSTER: cluster_id,
        OWNER_UID: owner_uid,
        TOTAL_BYTES: str(total_bytes),
        POPULATOR_KIND: populator_kind,
        METRICS_PORT: str(metrics_port),
        METRICS_SCHEME: metrics_scheme,
    }


def missing(labels: Mapping[str, str], annotations: Mapping[str, str]) -> list[str]:
    """Which of the keys discovery needs a pod lacks (empty: it can be scraped)."""
    need_labels = (PLAN, MIGRATION, VM, DISK)
    need_annotations = (OWNER_UID, CLUSTER)
    return [k for k in need_labels if not labels.get(k)] + [
        k for k in need_annotations if not annotations.get(k)
    ]
