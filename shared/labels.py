"""Moved to ``shared.populator`` (the populator contract); this shim keeps the old names
for the modules that have not switched yet (the orchestrator, the planner, the inventory,
the progress service, ``tools/demoverify.py``). The last of them deletes it."""

from __future__ import annotations

from shared.populator import (
    CLUSTER,
    DISK,
    MANAGED_BY,
    MANAGED_BY_HOIST,
    MIGRATION,
    OWNER_UID,
    PLAN,
    POPULATOR_KIND,
    PREFIX,
    TOTAL_BYTES,
    VM,
    missing,
)
from shared.populator import DISCOVERY_SELECTOR as POPULATOR_POD_SELECTOR
from shared.populator import METRICS_PORT_KEY as METRICS_PORT
from shared.populator import METRICS_SCHEME_KEY as METRICS_SCHEME
from shared.populator import pod_annotations as populator_pod_annotations
from shared.populator import pod_labels as populator_pod_labels

__all__ = [
    "CLUSTER",
    "DISK",
    "MANAGED_BY",
    "MANAGED_BY_HOIST",
    "METRICS_PORT",
    "METRICS_SCHEME",
    "MIGRATION",
    "OWNER_UID",
    "PLAN",
    "POPULATOR_KIND",
    "POPULATOR_POD_SELECTOR",
    "PREFIX",
    "TOTAL_BYTES",
    "VM",
    "missing",
    "populator_pod_annotations",
    "populator_pod_labels",
]
