"""The resource types the simulated API server serves, and how clients find them.

A `Kind` is what discovery advertises (group, version, plural, scope, verbs) plus what the
server needs to treat it right (status subresource, selectable fields). Built-in kinds are
declared here; custom resources join the registry when their CRD is created and leave when
it is deleted, exactly like a real cluster where applying a CRD makes its kind servable.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
COMMON_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


@dataclass(frozen=True)
class Kind:
    """One resource type at one version (`pods` in `v1`, `virtualmachines` in `kubevirt.io/v1`)."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    status: bool = False
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    #: Fields a `fieldSelector` may name (a real server answers 400 for any other).
    fields: frozenset[str] = COMMON_FIELDS
    #: Subresources other than status (`log`, `proxy`, `binding` for pods).
    extra_subresources: tuple[str, ...] = ()
    #: True for kinds that exist because a CRD defines them.
    custom: bool = False
    #: The name of the CRD that defines this kind (for cleanup when the CRD goes).
    crd_name: str = ""
    #: Columns for `kubectl get` beyond NAME and AGE: (header, JSON path, type).
    # printer columns: (name, JSONPath, type[, priority]), as a CRD declares them
    columns: tuple[tuple[Any, ...], ...] = field(default=())

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def key(self) -> tuple[str, str]:
        """Identity across versions: objects are stored once per group and kind."""
        return (self.group, self.kind)

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


class Registry:
    """Kinds by every name a client may use: (group, version, plural) and (group, kind)."""

    def __init__(self, kinds: list[Kind] | None = None) -> None:
        self._by_path: dict[tuple[str, str, str], Kind] = {}
        self._by_key: dict[tuple[str, str], list[Kind]] = {}
        for kind in kinds or []:
            self.add(kind)

    def add(self, kind: Kind) -> None:
        self._by_path[(kind.group, kind.version, kind.plural)] = kind
        versions = [k for k in self._by_key.get(kind.key, []) if k.version != kind.version]
        self._by_key[kind.key] = [*versions, kind]

    def remove(self, kind: Kind) -> None:
        self._by_path.pop((kind.group, kind.version, kind.plural), None)
        left = [k for k in self._by_key.get(kind.key, []) if k.version != kind.version]
        if left:
            self._by_key[kind.key] = left
        else:
            self._by_key.pop(kind.key, None)

    def lookup(self, group: str, version: str, plural: str) -> Kind | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, group: str, kind: str) -> Kind | None:
        """The first (storage) version of a kind, for owner references and events."""
        versions = self._by_key.get((group, kind))
        return versions[0] if versions else None

    def by_api_version(self, api_version: str, kind: str) -> Kind | None:
        group, _, version = api_version.rpartition("/")
        for candidate in self._by_key.get((group, kind), []):
            if candidate.version == version:
                return candidate
        return None

    def __iter__(self) -> Iterator[Kind]:
        return iter(list(self._by_path.values()))

    def groups(self) -> dict[str, list[str]]:
        """Group -> served versions, in registration order (the first is preferred)."""
        result: dict[str, list[str]] = {}
        for kind in self._by_path.values():
            versions = result.setdefault(kind.group, [])
            if kind.version not in versions:
                versions.append(kind.version)
        return result


POD_FIELDS = COMMON_FIELDS | {
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
}
EVENT_FIELDS = COMMON_FIELDS | {
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
}

PHASE = ("Status", ".status.phase", "string")

BUILTIN: list[Kind] = [
    Kind(
        "",
        "v1",
        "Namespace",
        "namespaces",
        False,
        True,
        ("ns",),
        fields=COMMON_FIELDS | {"status.phase"},
        columns=(PHASE,),
    ),
    Kind(
        "",
        "v1",
        "Node",
        "nodes",
        False,
        True,
        ("no",),
        fields=COMMON_FIELDS | {"spec.unschedulable"},
    ),
    Kind(
        "",
        "v1",
        "Secret",
        "secrets",
        True,
        fields=COMMON_FIELDS | {"type"},
        columns=(("Type", ".type", "string"),),
    ),
    Kind("", "v1", "ConfigMap", "configmaps", True, short_names=("cm",)),
    Kind(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        True,
        True,
        ("pvc",),
        columns=(
            PHASE,
            ("Volume", ".spec.volumeName", "string"),
            ("Capacity", ".status.capacity.storage", "string"),
            ("StorageClass", ".spec.storageClassName", "string"),
        ),
    ),
    Kind(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        False,
        True,
        ("pv",),
        columns=(
            ("Capacity", ".spec.capacity.storage", "string"),
            PHASE,
            ("Claim", ".spec.claimRef.name", "string"),
            ("StorageClass", ".spec.storageClassName", "string"),
        ),
    ),
    Kind(
        "",
        "v1",
        "Pod",
        "pods",
        True,
        True,
        ("po",),
        ("all",),
        POD_FIELDS,
        ("log", "proxy", "binding"),
        columns=(PHASE, ("IP", ".status.podIP", "string"), ("Node", ".spec.nodeName", "string")),
    ),
    Kind(
        "",
        "v1",
        "Event",
        "events",
        True,
        short_names=("ev",),
        fields=EVENT_FIELDS,
        columns=(
            ("Type", ".type", "string"),
            ("Reason", ".reason", "string"),
            ("Message", ".message", "string"),
        ),
    ),
    Kind("", "v1", "Service", "services", True, True, ("svc",), ("all",)),
    Kind("", "v1", "ServiceAccount", "serviceaccounts", True, short_names=("sa",)),
    Kind(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        False,
        short_names=("sc",),
        columns=(
            ("Provisioner", ".provisioner", "string"),
            ("VolumeBindingMode", ".volumeBindingMode", "string"),
        ),
    ),
    Kind(
        "storage.k8s.io",
        "v1",
        "CSIStorageCapacity",
        "csistoragecapacities",
        True,
        columns=(
            ("StorageClassName", ".storageClassName", "string"),
            ("Capacity", ".capacity", "string"),
        ),
    ),
    Kind("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    Kind("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    Kind("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    Kind("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    Kind("apps", "v1", "Deployment", "deployments", True, True, ("deploy",), ("all",)),
    Kind("apps", "v1", "StatefulSet", "statefulsets", True, True, ("sts",), ("all",)),
    Kind(
        "batch",
        "v1",
        "Job",
        "jobs",
        True,
        True,
        categories=("all",),
        fields=COMMON_FIELDS | {"status.successful"},
        columns=(
            ("Completions", ".status.succeeded", "integer"),
            ("Active", ".status.active", "integer"),
            ("Failed", ".status.failed", "integer"),
        ),
    ),
    Kind("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, True, ("pdb",)),
    Kind("networking.k8s.io", "v1", "Ingress", "ingresses", True, True, ("ing",)),
    Kind(
        "networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True, short_names=("netpol",)
    ),
    Kind("coordination.k8s.io", "v1", "Lease", "leases", True),
    Kind(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        True,
        ("crd", "crds"),
    ),
    Kind(
        "kubevirt.io",
        "v1",
        "VirtualMachine",
        "virtualmachines",
        True,
        True,
        ("vm", "vms"),
        ("all",),
        columns=(
            ("Age", ".metadata.creationTimestamp", "date"),
            ("Status", ".status.printableStatus", "string"),
            ("Ready", ".status.conditions[?(@.type=='Ready')].status", "string"),
        ),
    ),
]
