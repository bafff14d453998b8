"""The claim side: which CR a user claim names, the CR document, the names derived from a
claim, and the ids the claim carries for the events about its pod.

Names derive from the claim's uid, never drawn at random: a controller that runs again
finds what it made instead of making it twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.populator.keys import CLUSTER, DISK, MIGRATION, PLAN, POPULATOR_KIND, TOTAL_BYTES, VM
from shared.populator.kinds import API_VERSION, GROUP, Kind, Obj, Spec, kind_named

PRIME_PREFIX = "prime-"


@dataclass(frozen=True)
class SourceRef:
    """The populator CR a user claim names."""

    kind: Kind
    namespace: str
    name: str


def data_source_ref(kind: Kind, cr_name: str) -> dict[str, str]:
    """A user claim's ``dataSourceRef``: the claim stays unbound until it is populated."""
    return {"apiGroup": GROUP, "kind": kind.name, "name": cr_name}


def source_of(claim: Mapping[str, Any]) -> SourceRef | None:
    """The CR a claim names, when it is one of Hoist's kinds; None for anyone else's."""
    ref = (claim.get("spec") or {}).get("dataSourceRef") or {}
    name = ref.get("kind")
    kind = kind_named(name) if isinstance(name, str) else None
    if ref.get("apiGroup") != GROUP or kind is None or not ref.get("name"):
        return None
    namespace = claim["metadata"]["namespace"]
    return SourceRef(kind, ref.get("namespace") or namespace, ref["name"])


def populator(
    kind: Kind,
    spec: Spec,
    *,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    owner: Mapping[str, Any],
) -> Obj:
    """The populator CR document (owned by its claim: it goes when the claim goes)."""
    return {
        "apiVersion": API_VERSION,
        "kind": kind.name,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "ownerReferences": [dict(owner)],
        },
        "spec": spec.to_dict(),
    }


def prime_claim(user_claim_uid: str) -> str:
    return f"{PRIME_PREFIX}{user_claim_uid}"


def populator_pod(user_claim_uid: str) -> str:
    return f"populate-{user_claim_uid}"


def populator_cr(pvc_name: str) -> str:
    """The populator CR of a disk carries its claim's name (a different kind, no clash)."""
    return pvc_name


@dataclass(frozen=True)
class DiskIds:
    """Who a user claim (and so its populator pod) is for, from the pipeline's labels and
    annotations."""

    plan_id: str
    migration_id: str
    vm_id: str
    disk_id: str
    cluster_id: str
    total_bytes: int
    populator_kind: str

    @classmethod
    def of_claim(cls, claim: Mapping[str, Any], kind: Kind) -> DiskIds:
        """Note the fallback of ``populator_kind``: the orchestrator annotates the *kind*
        (``OvirtVolumePopulator``), a claim without the annotation gets the *source*
        (``ovirt``). Both have always been announced; the progress service stores the
        value as given. Kept as it is (changing it changes events)."""
        meta = claim.get("metadata") or {}
        lab = meta.get("labels") or {}
        ann = meta.get("annotations") or {}
        try:
            total = max(0, int(ann.get(TOTAL_BYTES, "0")))
        except ValueError:
            total = 0
        return cls(
            plan_id=lab.get(PLAN, ""),
            migration_id=lab.get(MIGRATION, ""),
            vm_id=lab.get(VM, ""),
            disk_id=lab.get(DISK, ""),
            cluster_id=ann.get(CLUSTER, ""),
            total_bytes=total,
            populator_kind=ann.get(POPULATOR_KIND) or kind.source.value,
        )

    @property
    def missing(self) -> list[str]:
        """Which of the ids events need the claim lacks (empty: it can be announced)."""
        wanted = {
            PLAN: self.plan_id,
            MIGRATION: self.migration_id,
            VM: self.vm_id,
            DISK: self.disk_id,
            CLUSTER: self.cluster_id,
        }
        return [key for key, value in wanted.items() if not value]


def claim_annotations(cluster_id: str, total_bytes: int, kind: Kind) -> dict[str, str]:
    """What a user claim tells the controller (and so the pod's discovery) besides labels."""
    return {CLUSTER: cluster_id, TOTAL_BYTES: str(total_bytes), POPULATOR_KIND: kind.name}
