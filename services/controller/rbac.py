"""What the populator controller's service account must be allowed: a ClusterRole's
``rules``, as data. The Helm chart renders exactly these (``tools/chartgen.py``), so a
call the controller starts making without its rule fails a test, not a cluster."""

from __future__ import annotations

from typing import Any

from shared import populator as contract

Obj = dict[str, Any]


def cluster_role_rules() -> list[Obj]:
    """It works in every namespace a plan targets, and registers cluster-scoped objects."""
    plurals = [kind.plural for kind in contract.KINDS]
    return [
        {
            "apiGroups": [""],
            "resources": ["persistentvolumeclaims"],
            "verbs": ["get", "list", "watch", "create", "patch", "delete"],
        },
        # list: a static class's prime claim is pinned to an Available volume it picks.
        {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["get", "list", "patch"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
        {
            "apiGroups": [""],
            "resources": ["pods"],
            "verbs": ["get", "list", "watch", "create", "delete"],
        },
        {"apiGroups": [""], "resources": ["pods/log", "pods/proxy"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "create", "patch"]},
        {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": ["get"]},
        {
            "apiGroups": [contract.GROUP],
            "resources": plurals,
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": [contract.GROUP],
            "resources": [f"{plural}/status" for plural in plurals],
            "verbs": ["get", "patch", "update"],
        },
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["get", "create", "update"],
        },
        {
            "apiGroups": ["populator.storage.k8s.io"],
            "resources": ["volumepopulators"],
            "verbs": ["get", "create", "update"],
        },
    ]


def namespace_role_rules() -> list[Obj]:
    """In Hoist's own namespace: the provider Secrets, listed by ``Fleet`` to find the
    remote target clusters (a cluster-wide list of Secrets would be far more)."""
    return [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]
