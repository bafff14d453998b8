"""A remote target cluster: what Hoist needs there, and how it tells one is ready.

Hoist reaches a remote ``kubevirt`` provider with the credentials of its Secret only (a
kubeconfig with inline data, or a URL and a token). Those credentials are the least Hoist
needs: ``cluster_role_rules()`` is the union of what the inventory collects there, what
the orchestrator creates in target namespaces, what the progress service reads and what
the populator controller does, minus any write of a cluster-scoped definition. Hoist's
CRDs and VolumePopulators are installed by the cluster's admin with ``manifest()`` (the
same objects the chart ships), once and again at each upgrade, so a stolen provider token
can never redefine an API. ``missing()`` names what a remote cluster lacks of them: the
inventory reports it as the provider's problem, the controller waits for it.

``python -m tools.remoterbac`` prints ``manifest()`` as a YAML stream (docs/helm.md).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from shared import populator as contract
from shared.kube import CRD, NAMESPACE, SECRET, VOLUME_POPULATOR, Kube, Resource

Obj = dict[str, Any]

PROVIDER_TYPE_LABEL = "hoist.io/provider-type"
"""On every provider Secret (the inventory writes it): the provider's type, so the
populator controller finds the remote ``kubevirt`` targets among the Secrets."""

DEFAULT_NAME = "hoist-remote"
DEFAULT_NAMESPACE = "hoist-remote"

_POPULATORS = [kind.plural for kind in contract.KINDS]

# (apiGroup, resource) -> verbs, by who needs them; merged by ``cluster_role_rules``.
_NEEDS: list[tuple[str, str, str, tuple[str, ...]]] = [
    # inventory (services/inventory/sources/kubevirt/kinds.py SPECS), read-only.
    ("inventory", "", "namespaces", ("get", "list", "watch")),
    ("inventory", "", "persistentvolumeclaims", ("get", "list", "watch")),
    # Available volumes of static classes, counted for plan validation.
    ("inventory", "", "persistentvolumes", ("get", "list", "watch")),
    ("inventory", "storage.k8s.io", "storageclasses", ("get", "list", "watch")),
    ("inventory", "storage.k8s.io", "csistoragecapacities", ("get", "list", "watch")),
    ("inventory", "cdi.kubevirt.io", "storageprofiles", ("get", "list", "watch")),
    ("inventory", "k8s.cni.cncf.io", "network-attachment-definitions", ("get", "list", "watch")),
    ("inventory", "kubevirt.io", "virtualmachines", ("get", "list", "watch")),
    # orchestrator (the chart's "-target" ClusterRole): a VM's objects in its namespace.
    ("orchestrator", "", "persistentvolumeclaims", ("get", "list", "create", "patch", "delete")),
    ("orchestrator", "", "pods", ("get", "list", "create", "delete")),
    ("orchestrator", "", "secrets", ("get", "list", "create", "delete")),
    ("orchestrator", "", "pods/log", ("get",)),
    ("orchestrator", "", "configmaps", ("get", "list", "create", "delete")),
    ("orchestrator", "batch", "jobs", ("get", "list", "create", "delete")),
    *(
        ("orchestrator", contract.GROUP, plural, ("get", "list", "create", "delete"))
        for plural in _POPULATORS
    ),
    ("orchestrator", "kubevirt.io", "virtualmachines", ("get", "list", "create", "delete")),
    ("orchestrator", "", "namespaces", ("get",)),
    ("orchestrator", "storage.k8s.io", "storageclasses", ("get",)),
    # progress: populator pods, their /metrics through the pod proxy.
    ("progress", "", "pods", ("list", "watch")),
    ("progress", "", "pods/proxy", ("get",)),
]


def _controller_needs() -> list[tuple[str, str, str, tuple[str, ...]]]:
    """The controller's own rules (services/controller/rbac.py, mirrored as data here since
    shared code imports no service), with definitions read-only: ``missing`` only reads."""
    needs: list[tuple[str, str, str, tuple[str, ...]]] = [
        ("controller", "", "persistentvolumeclaims", ("get", "list", "watch", "create")),
        ("controller", "", "persistentvolumeclaims", ("patch", "delete")),
        # list: a static class's prime claim is pinned to an Available volume it picks,
        # and its populator pod follows that volume's node.
        ("controller", "", "persistentvolumes", ("get", "list", "patch")),
        ("controller", "", "nodes", ("get",)),
        ("controller", "", "pods", ("get", "list", "watch", "create", "delete")),
        ("controller", "", "pods/log", ("get",)),
        ("controller", "", "pods/proxy", ("get",)),
        ("controller", "", "secrets", ("get",)),
        ("controller", "", "events", ("get", "create", "patch")),
        ("controller", "storage.k8s.io", "storageclasses", ("get",)),
        ("controller", "apiextensions.k8s.io", "customresourcedefinitions", ("get",)),
        ("controller", "populator.storage.k8s.io", "volumepopulators", ("get",)),
    ]
    for plural in _POPULATORS:
        needs.append(("controller", contract.GROUP, plural, ("get", "list", "watch")))
        needs.append(("controller", contract.GROUP, f"{plural}/status", ("get", "patch", "update")))
    return needs


_VERB_ORDER = ("get", "list", "watch", "create", "update", "patch", "delete")


def cluster_role_rules() -> list[Obj]:
    """One rule per API group and verb set, resources sorted: stable, reviewable output."""
    verbs: dict[tuple[str, str], set[str]] = {}
    for _, group, resource, allowed in [*_NEEDS, *_controller_needs()]:
        verbs.setdefault((group, resource), set()).update(allowed)
    grouped: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for (group, resource), granted in sorted(verbs.items()):
        ordered = tuple(v for v in _VERB_ORDER if v in granted)
        grouped.setdefault((group, ordered), []).append(resource)
    return [
        {"apiGroups": [group], "resources": sorted(resources), "verbs": list(ordered)}
        for (group, ordered), resources in grouped.items()
    ]


def _stamped(manifest: Obj) -> Obj:
    body = copy.deepcopy(manifest)
    body["metadata"].setdefault("annotations", {})[contract.DIGEST_ANNOTATION] = contract.digest(
        manifest
    )
    return body


def definitions() -> list[Obj]:
    """Hoist's CRDs and VolumePopulators, stamped as the controller stamps them locally."""
    return [_stamped(m) for m in [*contract.crds(), *contract.volume_populators()]]


def manifest(name: str = DEFAULT_NAME, namespace: str = DEFAULT_NAMESPACE) -> list[Obj]:
    """What a remote cluster's admin applies: the definitions, then an identity for Hoist
    (a ServiceAccount bound to ``cluster_role_rules()``, and a long-lived token Secret the
    admin may use or replace by ``kubectl create token``)."""
    labels = {"app.kubernetes.io/part-of": "hoist", "app.kubernetes.io/component": "remote"}
    subject = {"kind": "ServiceAccount", "name": name, "namespace": namespace}
    return [
        *definitions(),
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": labels},
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name, "labels": labels},
            "rules": cluster_role_rules(),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [subject],
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/service-account-token",
            "metadata": {
                "name": f"{name}-token",
                "namespace": namespace,
                "labels": labels,
                "annotations": {"kubernetes.io/service-account.name": name},
            },
        },
    ]


RESOURCES: dict[str, Resource] = {
    r.kind: r
    for r in (
        CRD,
        VOLUME_POPULATOR,
        NAMESPACE,
        SECRET,
        Resource("", "v1", "serviceaccounts", "ServiceAccount"),
        Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
        Resource(
            "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False
        ),
    )
}
"""The kinds ``manifest()`` holds, to create them through the API."""


async def install(kube: Kube, objects: list[Obj] | None = None) -> None:
    """Create what ``manifest()`` (or ``objects`` of it) holds that the cluster lacks:
    what its admin's ``kubectl apply`` does, for the simulated clusters of tests and the
    demo (Hoist itself never calls it with a provider's credentials)."""
    for obj in manifest() if objects is None else objects:
        res = RESOURCES[obj["kind"]]
        namespace = obj["metadata"].get("namespace") if res.namespaced else None
        if await kube.get(res, obj["metadata"]["name"], namespace) is None:
            await kube.create(res, obj, namespace)


async def missing(kube: Kube) -> list[str]:
    """Each definition the cluster lacks or holds from another Hoist version, named as
    ``kubectl`` names it (``customresourcedefinitions/<name> (absent)``); empty: ready.
    A cluster that does not serve the VolumePopulator API at all needs none of those."""
    found: list[str] = []
    populators_served = await _served(kube, f"/apis/{VOLUME_POPULATOR.api_version}")
    for wanted in definitions():
        res = CRD if wanted["kind"] == CRD.kind else VOLUME_POPULATOR
        if res is VOLUME_POPULATOR and not populators_served:
            continue  # no volume-data-source-validator: nothing to register
        name = wanted["metadata"]["name"]
        current = await kube.get(res, name)
        if current is None:
            found.append(f"{res.plural}/{name} (absent)")
        elif _digest(current) != _digest(wanted):
            found.append(f"{res.plural}/{name} (from another Hoist version)")
    return found


async def _served(kube: Kube, path: str) -> bool:
    try:
        await kube.call("GET", path)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _digest(obj: Mapping[str, Any]) -> str:
    return str(
        ((obj.get("metadata") or {}).get("annotations") or {}).get(contract.DIGEST_ANNOTATION, "")
    )
