"""The normalized inventory: what every source's collector produces and the store keeps.

One shape for every kind of object (a VM, a disk, a storage class, ...) so the store, the API
and the events need no per-kind code: an ``Item`` is identified by ``(kind, id)`` within its
provider, carries a display ``name``, an optional ``status`` and ``parent`` (the id of the
object it belongs to, for filters), and ``data``: the normalized fields, JSON-able, stable
in key order so two loads of an unchanged object hash alike. Sources that need more than the
normalized fields keep the raw detail under ``data["raw"]``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.payloads import ProviderType

# kind -> collection (the path segment of GET /providers/{id}/{collection})
COLLECTIONS: dict[str, str] = {
    "vm": "vms",
    "disk": "disks",
    "network": "networks",
    "nicprofile": "nicprofiles",
    "subnet": "subnets",
    "storagedomain": "storagedomains",
    "diskprofile": "diskprofiles",
    "host": "hosts",
    "cluster": "clusters",
    "datacenter": "datacenters",
    "image": "images",
    "volume": "volumes",
    "volumetype": "volumetypes",
    "snapshot": "snapshots",
    "flavor": "flavors",
    "project": "projects",
    "namespace": "namespaces",
    "storageclass": "storageclasses",
    "storageprofile": "storageprofiles",
    "networkattachmentdefinition": "networkattachmentdefinitions",
    "virtualmachine": "virtualmachines",
    "persistentvolumeclaim": "persistentvolumeclaims",
    "storagecapacity": "storagecapacities",
    "persistentvolume": "persistentvolumes",
}
KINDS: dict[str, str] = {c: k for k, c in COLLECTIONS.items()}

# What each provider type collects (a collection outside its set is a 404 for that provider).
KINDS_BY_TYPE: dict[ProviderType, tuple[str, ...]] = {
    ProviderType.OVIRT: (
        "datacenter",
        "cluster",
        "host",
        "network",
        "nicprofile",
        "storagedomain",
        "diskprofile",
        "disk",
        "vm",
    ),
    ProviderType.OPENSTACK: (
        "project",
        "flavor",
        "image",
        "volumetype",
        "volume",
        "snapshot",
        "network",
        "subnet",
        "vm",
    ),
    ProviderType.KUBEVIRT: (
        "namespace",
        "storageclass",
        "storageprofile",
        "networkattachmentdefinition",
        "virtualmachine",
        "persistentvolumeclaim",
        "storagecapacity",
        "persistentvolume",
    ),
}


class Category(StrEnum):
    CRITICAL = "Critical"
    WARNING = "Warning"
    INFORMATION = "Information"


CATEGORY_RANK = {Category.CRITICAL: 3, Category.WARNING: 2, Category.INFORMATION: 1}


@dataclass(frozen=True)
class Concern:
    """A validation finding about one VM, shown before a plan is started.

    ``id`` is stable (``ovirt.disk.locked``) so plans and UIs can refer to it; ``assessment``
    tells the user what it means for the migration and what to do.
    """

    id: str
    label: str
    category: Category
    assessment: str

    def as_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "label": self.label,
            "category": self.category.value,
            "assessment": self.assessment,
        }


@dataclass(frozen=True)
class Item:
    kind: str
    id: str
    name: str
    data: Mapping[str, Any]
    status: str = ""
    parent: str = ""

    def __post_init__(self) -> None:
        if self.kind not in COLLECTIONS:
            raise ValueError(f"unknown inventory kind {self.kind!r}")
        if not self.id:
            raise ValueError(f"a {self.kind} without an id")

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.id)

    def digest(self) -> str:
        """Content hash: an unchanged object re-collected keeps its revision."""
        body = json.dumps(
            [self.name, self.status, self.parent, self.data],
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
        return hashlib.sha256(body.encode()).hexdigest()


@dataclass
class Batch:
    """What one collection round found.

    ``items`` are created or updated objects; ``deleted`` are keys known to be gone (from
    events); for each kind in ``complete``, ``items`` holds every object of that kind, so
    any stored object of that kind not among them is deleted (a full load, or a
    relist-and-compare).
    """

    items: list[Item] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)
    complete: frozenset[str] = frozenset()

    def extend(self, items: Iterable[Item]) -> None:
        self.items.extend(items)

    @property
    def empty(self) -> bool:
        return not self.items and not self.deleted and not self.complete
