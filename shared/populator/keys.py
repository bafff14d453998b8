"""Labels, annotations and selectors of the objects around a populator.

The orchestrator **must** put these on every claim it creates, and the controller copies
them onto the populator pod: the progress service finds populator pods after a restart by
watching pods with ``hoist.io/disk`` in the cluster Hoist runs in, and reads from the
annotations everything the ``populator.pod.started`` event would have told it. A pod
without them is invisible to that watch (the event alone still works).

Labels are for selection (short values: ids); annotations carry the rest (numbers, UIDs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from shared.populator.kinds import PREFIX
from shared.populator.page import METRICS_PORT, METRICS_SCHEME

# Labels (selectable: short values, ids).
PLAN = f"{PREFIX}plan"
MIGRATION = f"{PREFIX}migration"
VM = f"{PREFIX}vm"
DISK = f"{PREFIX}disk"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_HOIST = "hoist"
COMPONENT = "app.kubernetes.io/component"
POPULATOR_COMPONENT = "populator"
"""``COMPONENT`` of populator pods (the controller watches pods by it)."""
PRIME_COMPONENT = "prime-claim"

# Annotations of populator pods (and, for the last three, of user claims).
OWNER_UID = f"{PREFIX}owner-uid"
"""UID of the user PVC: the ``ownerUID`` label of the pod's metrics."""
METRICS_PORT_KEY = f"{PREFIX}metrics-port"
METRICS_SCHEME_KEY = f"{PREFIX}metrics-scheme"
CLUSTER = f"{PREFIX}cluster"
"""Target provider id (the cluster the pod runs in), as in ``populator.pod.started``."""
TOTAL_BYTES = f"{PREFIX}total-bytes"
POPULATOR_KIND = f"{PREFIX}populator-kind"

# The mechanism's keys on claims and volumes.
FINALIZER = f"{PREFIX}populate-target-protection"
"""On a user claim while the controller populates it; removed once the data is in place."""
POPULATED_FROM = f"{PREFIX}populated-from"
HOLD = f"{PREFIX}hold"
"""A label no volume carries: a user claim selects volumes that have it
(``HOLD_SELECTOR``), so the PersistentVolume controller and the scheduler never bind it by
themselves to an Available (empty) static volume; only the volume the populator
controller pre-binds to it, once filled, binds (a pre-bound volume ignores selectors)."""
HOLD_SELECTOR = {"matchExpressions": [{"key": HOLD, "operator": "Exists"}]}
"""On a PV the controller rebound: ``namespace/name`` of the populator CR it came from."""
RECREATIONS = f"{PREFIX}recreations"
"""On a user claim: how many times its failed populator pod was recreated."""
LAST_FAILED_POD = f"{PREFIX}last-failed-pod"
"""On a user claim: uid of the failed populator pod last counted in ``RECREATIONS`` (so a
controller restarted between counting and deleting the pod does not count it twice)."""
SELECTED_NODE = "volume.kubernetes.io/selected-node"
MULTUS_NETWORKS = "k8s.v1.cni.cncf.io/networks"

DISCOVERY_SELECTOR = f"{MANAGED_BY}={MANAGED_BY_HOIST},{DISK}"
"""Every populator pod Hoist started (the progress service's watch)."""
CONTROLLER_SELECTOR = f"{MANAGED_BY}={MANAGED_BY_HOIST},{COMPONENT}={POPULATOR_COMPONENT}"
"""Every populator pod the controller made (its pod watch)."""


def pod_labels(plan_id: str, migration_id: str, vm_id: str, disk_id: str) -> dict[str, str]:
    """Labels of a populator pod (ids are DNS-1123 labels or UUIDs, valid label values)."""
    return {
        MANAGED_BY: MANAGED_BY_HOIST,
        PLAN: plan_id,
        MIGRATION: migration_id,
        VM: vm_id,
        DISK: disk_id,
    }


def pod_annotations(
    *,
    cluster_id: str,
    owner_uid: str,
    total_bytes: int,
    populator_kind: str,
    metrics_port: int = METRICS_PORT,
    metrics_scheme: str = METRICS_SCHEME,
) -> dict[str, str]:
    """What discovery reads from a populator pod besides its labels."""
    return {
        CLUSTER: cluster_id,
        OWNER_UID: owner_uid,
        TOTAL_BYTES: str(total_bytes),
        POPULATOR_KIND: populator_kind,
        METRICS_PORT_KEY: str(metrics_port),
        METRICS_SCHEME_KEY: metrics_scheme,
    }


def missing(labels: Mapping[str, str], annotations: Mapping[str, str]) -> list[str]:
    """Which of the keys discovery needs a pod lacks (empty: it can be scraped)."""
    need_labels = (PLAN, MIGRATION, VM, DISK)
    need_annotations = (OWNER_UID, CLUSTER)
    return [k for k in need_labels if not labels.get(k)] + [
        k for k in need_annotations if not annotations.get(k)
    ]


def label_value(value: str) -> str:
    """``value`` when it is a valid label value, else its digest (the same every time)."""
    ok = len(value) <= 63 and all(c.isalnum() or c in "-_." for c in value)
    if ok and (not value or (value[0].isalnum() and value[-1].isalnum())):
        return value
    return f"h-{hashlib.sha256(value.encode()).hexdigest()[:40]}"


def object_labels(plan_id: str, migration_id: str, vm_id: str, disk_id: str = "") -> dict[str, str]:
    """Labels of every object created for a VM (and a disk of it): cleanup selects by these,
    and the controller copies them onto the prime claim and the pod."""
    out = {
        MANAGED_BY: MANAGED_BY_HOIST,
        PLAN: label_value(plan_id),
        MIGRATION: label_value(migration_id),
        VM: label_value(vm_id),
    }
    if disk_id:
        out[DISK] = label_value(disk_id)
    return out
