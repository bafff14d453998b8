"""The kinds a KubeVirt target is collected for, and how each becomes an ``Item``.

Objects are read as raw JSON (no model classes: custom resources have none, and the raw
dict is what the store keeps under ``data``). Ids are names (``namespace/name`` for
namespaced kinds) because storage and network maps refer to them by name and the planner
checks the names it will create against them; only fields that mean something to a
migration are kept, never ``resourceVersion`` or ``managedFields``, so an object re-listed
unchanged hashes alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.inventory.items import Item
from shared import volumes
from shared.kube import NAMESPACE, PV, PVC, STORAGE_CLASS, VIRTUAL_MACHINE, Resource
from shared.populator import PREFIX as HOIST_LABEL_PREFIX
from shared.quantity import size_bytes

Obj = dict[str, Any]

DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)


@dataclass(frozen=True)
class KindSpec:
    """Where one kind is listed and watched, and how its objects are normalized."""

    #: The inventory's kind of item (``namespace``, ``virtualmachine``).
    kind: str
    resource: Resource
    normalize: Callable[[Obj], Item]
    #: A 404 means "not installed here" (an add-on's CRD, an API an older cluster lacks):
    #: an empty kind, listed again until it appears. For the others a 404 means the URL is
    #: not a Kubernetes API server.
    optional: bool = False

    @property
    def namespaced(self) -> bool:
        """Ids are ``namespace/name``."""
        return self.resource.namespaced

    @property
    def path(self) -> str:
        """The cluster-wide collection (all namespaces for a namespaced kind)."""
        return self.resource.path()


def _meta(obj: Obj) -> Obj:
    meta: Obj = obj.get("metadata") or {}
    return meta


def _common(obj: Obj) -> Obj:
    meta = _meta(obj)
    return {
        "uid": meta.get("uid", ""),
        "labels": dict(meta.get("labels") or {}),
        "created": meta.get("creationTimestamp", ""),
    }


def _namespaced(obj: Obj) -> tuple[str, str]:
    """(namespace, the ``namespace/name`` id) of a namespaced object."""
    meta = _meta(obj)
    ns = str(meta.get("namespace", ""))
    return ns, f"{ns}/{meta['name']}"


def _bytes(value: object) -> int | None:
    """Bytes of a quantity; None when absent or unparsable (the server validates
    quantities, so unparsable means a server Hoist cannot read, not a reason to drop the
    object: its name still counts)."""
    if value is None or value == "":
        return None
    try:
        return size_bytes(str(value))
    except ValueError:
        return None


def namespace(obj: Obj) -> Item:
    meta = _meta(obj)
    phase = (obj.get("status") or {}).get("phase", "Active")
    terminating = bool(meta.get("deletionTimestamp"))
    return Item(
        kind="namespace",
        id=meta["name"],
        name=meta["name"],
        status="Terminating" if terminating else phase,
        data={**_common(obj), "phase": phase},
    )


def is_default_class(obj: Obj) -> bool:
    annotations = _meta(obj).get("annotations") or {}
    return any(annotations.get(a) == "true" for a in DEFAULT_CLASS_ANNOTATIONS)


def storage_class(obj: Obj) -> Item:
    meta = _meta(obj)
    return Item(
        kind="storageclass",
        id=meta["name"],
        name=meta["name"],
        data={
            **_common(obj),
            "provisioner": obj.get("provisioner", ""),
            "volumeBindingMode": obj.get("volumeBindingMode") or "Immediate",
            "reclaimPolicy": obj.get("reclaimPolicy") or "Delete",
            "allowVolumeExpansion": bool(obj.get("allowVolumeExpansion")),
            "parameters": dict(obj.get("parameters") or {}),
            "default": is_default_class(obj),
        },
    )


def _property_sets(sets: object) -> list[Obj]:
    return [
        {"accessModes": list(s.get("accessModes") or []), "volumeMode": s.get("volumeMode", "")}
        for s in (sets if isinstance(sets, list) else [])
        if isinstance(s, dict)
    ]


def storage_profile(obj: Obj) -> Item:
    """CDI's view of a storage class: ``status`` is what CDI concluded (from its capability
    table or the administrator's ``spec``), so ``status`` is read first."""
    meta = _meta(obj)
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    sets = status.get("claimPropertySets") or spec.get("claimPropertySets")
    return Item(
        kind="storageprofile",
        id=meta["name"],
        name=meta["name"],
        parent=status.get("storageClass") or meta["name"],
        data={
            **_common(obj),
            "provisioner": status.get("provisioner", ""),
            "claimPropertySets": _property_sets(sets),
            "cloneStrategy": status.get("cloneStrategy") or spec.get("cloneStrategy") or "",
            "dataImportCronSourceFormat": status.get("dataImportCronSourceFormat")
            or spec.get("dataImportCronSourceFormat")
            or "",
        },
    )


def cni_config(text: object) -> Obj:
    """``type`` and ``name`` of a NAD's CNI config (a plugin, or a list of plugins whose
    first ``type`` is the one that attaches the interface); ``error`` when unparsable."""
    if not text:
        return {"type": "", "name": "", "error": ""}
    try:
        config = json.loads(str(text))
    except ValueError:
        return {"type": "", "name": "", "error": "spec.config is not JSON"}
    if not isinstance(config, dict):
        return {"type": "", "name": "", "error": "spec.config is not a JSON object"}
    kind = config.get("type", "")
    plugins = config.get("plugins")
    if not kind and isinstance(plugins, list) and plugins and isinstance(plugins[0], dict):
        kind = plugins[0].get("type", "")
    return {
        "type": str(kind),
        "name": str(config.get("name", "")),
        "cniVersion": str(config.get("cniVersion", "")),
        "error": "",
    }


def network_attachment_definition(obj: Obj) -> Item:
    meta = _meta(obj)
    ns, key = _namespaced(obj)
    annotations = meta.get("annotations") or {}
    return Item(
        kind="networkattachmentdefinition",
        id=key,
        name=meta["name"],
        parent=ns,
        data={
            **_common(obj),
            "namespace": ns,
            "config": cni_config((obj.get("spec") or {}).get("config")),
            "resourceName": annotations.get("k8s.v1.cni.cncf.io/resourceName", ""),
        },
    )


def hoist_labels(labels: dict[str, str]) -> dict[str, str]:
    """The ``hoist.io/*`` labels: what tells the planner an object is Hoist's own (a VM it
    created for a plan) rather than a name collision with someone else's."""
    return {k: v for k, v in labels.items() if k.startswith(HOIST_LABEL_PREFIX)}


def virtual_machine(obj: Obj) -> Item:
    """A KubeVirt VirtualMachine. ``runStrategy`` is the effective one: KubeVirt treats the
    deprecated ``running: true/false`` as ``Always``/``Halted``."""
    meta = _meta(obj)
    ns, key = _namespaced(obj)
    spec = obj.get("spec") or {}
    running = spec.get("running")
    strategy = spec.get("runStrategy") or ""
    if not strategy and isinstance(running, bool):
        strategy = "Always" if running else "Halted"
    common = _common(obj)
    return Item(
        kind="virtualmachine",
        id=key,
        name=meta["name"],
        parent=ns,
        status=str((obj.get("status") or {}).get("printableStatus") or ""),
        data={
            **common,
            "namespace": ns,
            "hoist": hoist_labels(common["labels"]),
            "running": running if isinstance(running, bool) else None,
            "runStrategy": str(strategy),
        },
    )


def persistent_volume_claim(obj: Obj) -> Item:
    """A PVC. ``storageClassName`` stays as given: absent (None) means the default class,
    ``""`` means no class (only pre-provisioned volumes), which a capacity check must tell
    apart. Status is the phase, or ``Terminating`` while deletion waits (as kubectl shows)."""
    meta = _meta(obj)
    ns, key = _namespaced(obj)
    spec = obj.get("spec") or {}
    phase = str((obj.get("status") or {}).get("phase") or "Pending")
    requested = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    ref = spec.get("dataSourceRef") or spec.get("dataSource")
    source = (
        {k: str(ref[k]) for k in ("apiGroup", "kind", "name", "namespace") if ref.get(k)}
        if isinstance(ref, dict)
        else None
    )
    return Item(
        kind="persistentvolumeclaim",
        id=key,
        name=meta["name"],
        parent=ns,
        status="Terminating" if meta.get("deletionTimestamp") else phase,
        data={
            **_common(obj),
            "namespace": ns,
            "phase": phase,
            "storageClassName": spec.get("storageClassName"),
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "accessModes": list(spec.get("accessModes") or []),
            "requested": str(requested) if requested is not None else "",
            "requestedBytes": _bytes(requested),
            "volumeName": spec.get("volumeName") or "",
            "dataSourceRef": source,
        },
    )


def persistent_volume(obj: Obj) -> Item:
    """A PersistentVolume: what a static class offers. ``available`` is what a claim may
    still bind (phase Available, no claimRef, not being deleted: ``shared.volumes``), the
    planner counts those per class and size; ``nodes`` the hostnames its node affinity
    names (a local volume), [] when any node may use it."""
    meta = _meta(obj)
    spec = obj.get("spec") or {}
    phase = str((obj.get("status") or {}).get("phase") or "Pending")
    return Item(
        kind="persistentvolume",
        id=meta["name"],
        name=meta["name"],
        parent=str(spec.get("storageClassName") or ""),
        status="Terminating" if meta.get("deletionTimestamp") else phase,
        data={
            **_common(obj),
            "phase": phase,
            "storageClassName": str(spec.get("storageClassName") or ""),
            "capacityBytes": volumes.capacity(obj),
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "accessModes": list(spec.get("accessModes") or []),
            "available": volumes.is_available(obj),
            "nodes": volumes.node_names(obj),
        },
    )


def storage_capacity(obj: Obj) -> Item:
    """A CSIStorageCapacity: what a CSI driver can still provision for one class in one
    topology segment. ``capacity`` and ``maximumVolumeSize`` are in bytes, None when absent
    (an absent capacity means unknown, which the scheduler reads as none); ``nodeTopology``
    is kept as given: absent means no node reaches the storage, ``{}`` every node."""
    meta = _meta(obj)
    ns, key = _namespaced(obj)
    capacity, largest = obj.get("capacity"), obj.get("maximumVolumeSize")
    topology = obj.get("nodeTopology")
    return Item(
        kind="storagecapacity",
        id=key,
        name=meta["name"],
        parent=str(obj.get("storageClassName") or ""),
        data={
            **_common(obj),
            "namespace": ns,
            "storageClassName": str(obj.get("storageClassName") or ""),
            "capacity": _bytes(capacity),
            "maximumVolumeSize": _bytes(largest),
            "nodeTopology": topology if isinstance(topology, dict) else None,
        },
    )


STORAGE_PROFILE = Resource("cdi.kubevirt.io", "v1beta1", "storageprofiles", "StorageProfile", False)
NETWORK_ATTACHMENT_DEFINITION = Resource(
    "k8s.cni.cncf.io", "v1", "network-attachment-definitions", "NetworkAttachmentDefinition"
)
CSI_STORAGE_CAPACITY = Resource(
    "storage.k8s.io", "v1", "csistoragecapacities", "CSIStorageCapacity"
)

SPECS: tuple[KindSpec, ...] = (
    KindSpec("namespace", NAMESPACE, namespace),
    KindSpec("storageclass", STORAGE_CLASS, storage_class),
    KindSpec("storageprofile", STORAGE_PROFILE, storage_profile, optional=True),
    KindSpec(
        "networkattachmentdefinition",
        NETWORK_ATTACHMENT_DEFINITION,
        network_attachment_definition,
        optional=True,
    ),
    # The probe refuses a target without kubevirt.io/v1, but a load does not depend on it:
    # KubeVirt uninstalled after the provider was made empties the kind, nothing more.
    KindSpec("virtualmachine", VIRTUAL_MACHINE, virtual_machine, optional=True),
    KindSpec("persistentvolumeclaim", PVC, persistent_volume_claim),
    # What static classes (no-provisioner, "") can still bind: counted at plan validation.
    KindSpec("persistentvolume", PV, persistent_volume),
    # storage.k8s.io/v1 since Kubernetes 1.24; a server without it is an empty kind.
    KindSpec("storagecapacity", CSI_STORAGE_CAPACITY, storage_capacity, optional=True),
)


def item_key(spec: KindSpec, obj: Obj) -> tuple[str, str]:
    """The key a (possibly partial, e.g. DELETED) object has, without normalizing it."""
    meta = _meta(obj)
    if spec.namespaced:
        return spec.kind, f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    return spec.kind, str(meta.get("name", ""))
