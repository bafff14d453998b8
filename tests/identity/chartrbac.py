"""The chart's RBAC applied to a simulated cluster, so a component runs under exactly it.

``helm template`` renders the chart (the default values); every ServiceAccount, Role,
ClusterRole and binding goes into the cluster as ``kubectl apply`` would put it, and a
component gets a kubeconfig holding a bound token of its own ServiceAccount. Taking a rule
away (``without``) is how a test proves the component needs it and says so clearly.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sim.kube.cluster import Cluster
from tests.chart import rendering as r

Obj = dict[str, Any]
RBAC_KINDS = {
    "ServiceAccount": ("serviceaccounts", ""),
    "Role": ("roles", "rbac.authorization.k8s.io"),
    "ClusterRole": ("clusterroles", "rbac.authorization.k8s.io"),
    "RoleBinding": ("rolebindings", "rbac.authorization.k8s.io"),
    "ClusterRoleBinding": ("clusterrolebindings", "rbac.authorization.k8s.io"),
}


def chart_rbac() -> list[Obj]:
    """The chart's identities and rules, as rendered with the default values."""
    return [d for d in r.objects("default") if d["kind"] in RBAC_KINDS]


def apply(sim: Cluster, objs: list[Obj]) -> None:
    for obj in objs:
        plural, group = RBAC_KINDS[obj["kind"]]
        kind = sim.kind(plural, group)
        ns = obj["metadata"].get("namespace")
        if sim.store.find(kind, ns, obj["metadata"]["name"]) is None:
            sim.store.create(kind, copy.deepcopy(obj), ns)


def remove(sim: Cluster, obj: Obj) -> None:
    plural, group = RBAC_KINDS[obj["kind"]]
    kind, ns, name = (
        sim.kind(plural, group),
        obj["metadata"].get("namespace"),
        obj["metadata"]["name"],
    )
    if sim.store.find(kind, ns, name) is not None:
        sim.store.delete(kind, ns, name)


@contextlib.contextmanager
def rule_taken_away(sim: Cluster, kind: str, name: str, resource: str) -> Iterator[Obj]:
    """The chart's RBAC in the cluster but with the rules naming ``resource`` taken from
    one role, for the block; the role as the chart renders it afterwards."""
    rules = chart_rbac()
    role = named(rules, kind, name)
    taken = without_rule(role, lambda rule: resource in rule.get("resources", []))
    apply(sim, [obj for obj in rules if obj is not role])
    remove(sim, role)
    apply(sim, [taken])
    try:
        yield taken
    finally:
        remove(sim, taken)
        apply(sim, [role])


def named(objs: list[Obj], kind: str, name: str) -> Obj:
    return r.named(objs, kind, name)


def without_rule(role: Obj, test: Callable[[Obj], bool]) -> Obj:
    """The role with the rules ``test`` picks removed (a rule taken away)."""
    changed = copy.deepcopy(role)
    changed["rules"] = [rule for rule in role["rules"] if not test(rule)]
    assert len(changed["rules"]) < len(role["rules"]), "no rule was taken away"
    return changed


def kubeconfig_for(sim: Cluster, path: Path, namespace: str, account: str) -> Path:
    """A kubeconfig holding a bound token of the ServiceAccount (as a pod would mount)."""
    return sim.kubeconfig(path, token=sim.service_account_token(namespace, account))


def bind(sim: Cluster, account: str, role: str, namespace: str | None = None) -> str:
    """A ServiceAccount in Hoist's namespace bound to a ClusterRole (a RoleBinding in
    ``namespace``, else a ClusterRoleBinding); returns its token."""
    token = sim.service_account_token(r.NAMESPACE, account)
    binding: Obj = {
        "metadata": {"name": f"{account}-{role}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": r.NAMESPACE}],
    }
    if namespace:
        binding["metadata"]["namespace"] = namespace
        sim.store.create(sim.kind("rolebindings", "rbac.authorization.k8s.io"), binding, namespace)
    else:
        sim.store.create(sim.kind("clusterrolebindings", "rbac.authorization.k8s.io"), binding)
    return token
