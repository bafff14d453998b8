"""RBAC as the API server's authorizer evaluates it: Roles, ClusterRoles, their bindings.

Every request is checked (``Authorizer.check``): the identity's bindings are found (a
ClusterRoleBinding anywhere, a RoleBinding in the request's namespace), their roles' rules
matched on verb, API group, resource (``pods``, ``pods/log``, ``*``, ``*/scale``), resource
name, or non-resource URL. ClusterRole aggregation is evaluated when a rule is looked up:
a ClusterRole with an ``aggregationRule`` has the rules of every ClusterRole its selectors
match, so a role labelled ``rbac.authorization.k8s.io/aggregate-to-view`` widens ``view``
at once, as the aggregation controller does within moments on a real cluster.

The bootstrap policy a kubeadm cluster starts with is created by ``bootstrap``:
``cluster-admin`` (bound to ``system:masters``), ``admin``/``edit``/``view`` as aggregated
roles, ``system:discovery``, ``system:basic-user`` (``kubectl auth can-i``/``whoami``) and
``system:public-info-viewer``.

A refusal is the real 403 Status: ``pods is forbidden: User "system:serviceaccount:ns:sa"
cannot list resource "pods" in API group "" in the namespace "ns"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sim.kube.authn import MASTERS, Identity
from sim.kube.errors import ApiError
from sim.kube.selectors import label_predicate

GROUP = "rbac.authorization.k8s.io"
Obj = dict[str, Any]


@dataclass(frozen=True)
class Attributes:
    """What a request does, as the authorizer sees it (``authorizer.Attributes``)."""

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    namespace: str = ""
    path: str = ""  # a non-resource request (``/version``, ``/healthz``)

    @property
    def resource_request(self) -> bool:
        return not self.path


class Authorizer:
    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster

    def allowed(self, identity: Identity, attrs: Attributes) -> tuple[bool, str]:
        """The decision and its reason, as a SubjectAccessReview's status reports them."""
        if identity.legacy_verbs is not None:
            ok = attrs.verb in identity.legacy_verbs or "*" in identity.legacy_verbs
            return ok, "allowed by the simulator's static token" if ok else ""
        if MASTERS in identity.groups:
            return True, ""
        for where, rules in self._rules_for(identity, attrs.namespace):
            if any(_matches(rule, attrs) for rule in rules):
                return True, f"RBAC: allowed by {where}"
        return False, ""

    def check(self, identity: Identity, attrs: Attributes) -> None:
        ok, _ = self.allowed(identity, attrs)
        if not ok:
            raise forbidden(identity, attrs)

    def rules_in(self, identity: Identity, namespace: str) -> list[Obj]:
        """Every rule that applies to the identity in a namespace (SelfSubjectRulesReview)."""
        if MASTERS in identity.groups:
            return [
                {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
                {"verbs": ["*"], "nonResourceURLs": ["*"]},
            ]
        return [rule for _, rules in self._rules_for(identity, namespace) for rule in rules]

    # -- bindings and roles ----------------------------------------------------------------

    def _rules_for(self, identity: Identity, namespace: str) -> Iterator[tuple[str, list[Obj]]]:
        store = self.cluster.store
        for entry in store.scan(self.cluster.kind("clusterrolebindings", GROUP), None, None):
            binding = entry.obj
            if _bound(binding, identity, None):
                ref = binding.get("roleRef", {})
                if ref.get("kind") == "ClusterRole":
                    yield _via(binding, ref), self.cluster_role_rules(ref.get("name", ""))
        if not namespace:
            return
        for entry in store.scan(self.cluster.kind("rolebindings", GROUP), namespace, None):
            binding = entry.obj
            if not _bound(binding, identity, namespace):
                continue
            ref = binding.get("roleRef", {})
            if ref.get("kind") == "ClusterRole":
                yield _via(binding, ref), self.cluster_role_rules(ref.get("name", ""))
            elif ref.get("kind") == "Role":
                role = store.find(self.cluster.kind("roles", GROUP), namespace, ref.get("name"))
                if role is not None:
                    yield _via(binding, ref), list(role.obj.get("rules") or [])

    def cluster_role_rules(self, name: str, seen: frozenset[str] = frozenset()) -> list[Obj]:
        """A ClusterRole's rules, with those its aggregationRule selects."""
        kind = self.cluster.kind("clusterroles", GROUP)
        role = self.cluster.store.find(kind, None, name)
        if role is None or name in seen:
            return []
        rules = list(role.obj.get("rules") or [])
        selectors = (role.obj.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
        for selector in selectors:
            predicate = label_predicate(_selector_text(selector))
            for entry in self.cluster.store.scan(kind, None, predicate):
                other = entry.obj["metadata"]["name"]
                if other != name:
                    rules += self.cluster_role_rules(other, seen | {name})
        return rules


def forbidden(identity: Identity, attrs: Attributes) -> ApiError:
    user = f'User "{identity.username}"'
    if not attrs.resource_request:
        return ApiError(
            403, "Forbidden", f'forbidden: {user} cannot {attrs.verb} path "{attrs.path}"'
        )
    resource = attrs.resource + (f"/{attrs.subresource}" if attrs.subresource else "")
    qualified = attrs.resource + (f".{attrs.group}" if attrs.group else "")
    subject = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    where = f' in the namespace "{attrs.namespace}"' if attrs.namespace else " at the cluster scope"
    message = (
        f"{subject} is forbidden: {user} cannot {attrs.verb} resource "
        f'"{resource}" in API group "{attrs.group}"{where}'
    )
    details: Obj = {"group": attrs.group, "kind": attrs.resource}
    if attrs.name:
        details["name"] = attrs.name
    return ApiError(403, "Forbidden", message, details=details)


def _via(binding: Obj, ref: Obj) -> str:
    meta = binding["metadata"]
    kind = "RoleBinding" if meta.get("namespace") else "ClusterRoleBinding"
    where = f'"{meta["name"]}" of {ref.get("kind")} "{ref.get("name")}"'
    return f"{kind} {where}" + (
        f' in namespace "{meta["namespace"]}"' if kind == "RoleBinding" else ""
    )


def _bound(binding: Obj, identity: Identity, namespace: str | None) -> bool:
    for subject in binding.get("subjects") or []:
        kind, name = subject.get("kind"), subject.get("name")
        if kind == "User" and name == identity.username:
            return True
        if kind == "Group" and name in identity.groups:
            return True
        if kind == "ServiceAccount":
            ns = subject.get("namespace") or namespace or ""
            if identity.username == f"system:serviceaccount:{ns}:{name}":
                return True
    return False


def _matches(rule: Obj, attrs: Attributes) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and attrs.verb not in verbs:
        return False
    if not attrs.resource_request:
        return any(
            url == "*"
            or url == attrs.path
            or (url.endswith("*") and attrs.path.startswith(url[:-1]))
            for url in rule.get("nonResourceURLs") or []
        )
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attrs.group not in groups:
        return False
    wanted = attrs.resource + (f"/{attrs.subresource}" if attrs.subresource else "")
    resources = rule.get("resources") or []
    ok = any(
        r in ("*", wanted) or (attrs.subresource and r == f"*/{attrs.subresource}")
        for r in resources
    )
    names = rule.get("resourceNames") or []
    return ok and (not names or attrs.name in names)


def _selector_text(selector: Obj) -> str:
    terms = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            terms.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            terms.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            terms.append(str(key))
        elif op == "DoesNotExist":
            terms.append(f"!{key}")
    return ",".join(terms)


# -- the bootstrap policy ---------------------------------------------------------------

_READ = ["get", "list", "watch"]
_WRITE = ["create", "delete", "deletecollection", "patch", "update"]
_DISCOVERY_URLS = [
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/openapi",
    "/openapi/*",
    "/version",
    "/version/",
    "/healthz",
    "/livez",
    "/readyz",
]


def _aggregated(name: str, into: str, rules: list[Obj], selects: list[str]) -> list[Obj]:
    label = f"{GROUP}/aggregate-to-{into}"
    roles: list[Obj] = [
        {
            "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "aggregationRule": {
                "clusterRoleSelectors": [
                    {"matchLabels": {f"{GROUP}/aggregate-to-{s}": "true"}} for s in selects
                ]
            },
            "rules": [],
        },
        {
            "metadata": {
                "name": f"system:aggregate-to-{into}",
                "labels": {"kubernetes.io/bootstrapping": "rbac-defaults", label: "true"},
            },
            "rules": rules,
        },
    ]
    return roles


def bootstrap_policy() -> tuple[list[Obj], list[Obj]]:
    """(ClusterRoles, ClusterRoleBindings) of a fresh kubeadm cluster, abridged to the
    resources the simulator serves."""
    everything = [
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
        {"nonResourceURLs": ["*"], "verbs": ["*"]},
    ]
    core_read = [
        "pods",
        "pods/log",
        "services",
        "endpoints",
        "persistentvolumeclaims",
        "configmaps",
        "serviceaccounts",
        "events",
        "namespaces",
    ]
    roles: list[Obj] = [
        {"metadata": {"name": "cluster-admin"}, "rules": everything},
        {
            "metadata": {"name": "system:discovery"},
            "rules": [{"nonResourceURLs": _DISCOVERY_URLS, "verbs": ["get"]}],
        },
        {
            "metadata": {"name": "system:public-info-viewer"},
            "rules": [
                {
                    "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
                    "verbs": ["get"],
                }
            ],
        },
        {
            "metadata": {"name": "system:auth-delegator"},
            "rules": [
                {
                    "apiGroups": ["authentication.k8s.io"],
                    "resources": ["tokenreviews"],
                    "verbs": ["create"],
                },
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["subjectaccessreviews"],
                    "verbs": ["create"],
                },
            ],
        },
        {
            "metadata": {"name": "system:basic-user"},
            "rules": [
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    "verbs": ["create"],
                },
                {
                    "apiGroups": ["authentication.k8s.io"],
                    "resources": ["selfsubjectreviews"],
                    "verbs": ["create"],
                },
            ],
        },
        *_aggregated(
            "view",
            "view",
            [
                {"apiGroups": [""], "resources": core_read, "verbs": _READ},
                {
                    "apiGroups": ["apps", "batch", "kubevirt.io", "cdi.kubevirt.io"],
                    "resources": ["*"],
                    "verbs": _READ,
                },
            ],
            ["view"],
        ),
        *_aggregated(
            "edit",
            "edit",
            [
                {
                    "apiGroups": ["", "apps", "batch", "kubevirt.io", "cdi.kubevirt.io"],
                    "resources": ["*"],
                    "verbs": _WRITE,
                }
            ],
            ["edit", "view"],
        ),
        *_aggregated(
            "admin",
            "admin",
            [
                {
                    "apiGroups": [GROUP],
                    "resources": ["roles", "rolebindings"],
                    "verbs": [*_READ, *_WRITE],
                },
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["localsubjectaccessreviews"],
                    "verbs": ["create"],
                },
            ],
            ["admin", "edit", "view"],
        ),
    ]
    for role in roles:
        role["metadata"].setdefault("labels", {"kubernetes.io/bootstrapping": "rbac-defaults"})

    def binding(name: str, role: str, group: str) -> Obj:
        return {
            "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": GROUP, "kind": "Group", "name": group}],
        }

    bindings = [
        binding("cluster-admin", "cluster-admin", MASTERS),
        binding("system:discovery", "system:discovery", "system:authenticated"),
        binding("system:basic-user", "system:basic-user", "system:authenticated"),
        binding("system:public-info-viewer", "system:public-info-viewer", "system:authenticated"),
    ]
    return roles, bindings


def bootstrap(cluster: Any) -> None:
    roles, bindings = bootstrap_policy()
    for plural, objs in (("clusterroles", roles), ("clusterrolebindings", bindings)):
        kind = cluster.kind(plural, GROUP)
        for obj in objs:
            if cluster.store.find(kind, None, obj["metadata"]["name"]) is None:
                cluster.store.create(kind, {"apiVersion": f"{GROUP}/v1", "kind": kind.kind, **obj})
