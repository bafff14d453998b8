"""The four kinds a KubeVirt target is collected for, and how each becomes an ``Item``.

Objects are read as raw JSON (no model classes: custom resources have none, and the raw
dict is what the store keeps under ``data``). Ids are names (``namespace/name`` for the
namespaced NetworkAttachmentDefinition) because storage and network maps refer to them by
name; only fields that mean something to a migration are kept, never ``resourceVersion``
or ``managedFields``, so an object re-listed unchanged hashes alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.inventory.model import Item

Obj = dict[str, Any]

DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)


@dataclass(frozen=True)
class KindSpec:
    """Where one kind is listed and watched, and how its objects are normalized."""

    kind: str
    group: str
    version: str
    plural: str
    normalize: Callable[[Obj], Item]

    @property
    def path(self) -> str:
        """The cluster-wide collection (all namespaces for a namespaced kind)."""
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        return f"{base}/{self.plural}"

    @property
    def optional(self) -> bool:
        """Served by an add-on's CRD: a 404 means not installed, an empty kind."""
        return self.group not in ("", "storage.k8s.io")


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
    ns = meta.get("namespace", "")
    annotations = meta.get("annotations") or {}
    return Item(
        kind="networkattachmentdefinition",
        id=f"{ns}/{meta['name']}",
        name=meta["name"],
        parent=ns,
        data={
            **_common(obj),
            "namespace": ns,
            "config": cni_config((obj.get("spec") or {}).get("config")),
            "resourceName": annotations.get("k8s.v1.cni.cncf.io/resourceName", ""),
        },
    )


SPECS: tuple[KindSpec, ...] = (
    KindSpec("namespace", "", "v1", "namespaces", namespace),
    KindSpec("storageclass", "storage.k8s.io", "v1", "storageclasses", storage_class),
    KindSpec("storageprofile", "cdi.kubevirt.io", "v1beta1", "storageprofiles", storage_profile),
    KindSpec(
        "networkattachmentdefinition",
        "k8s.cni.cncf.io",
        "v1",
        "network-attachment-definitions",
        network_attachment_definition,
    ),
)


def item_key(spec: KindSpec, obj: Obj) -> tuple[str, str]:
    """The key a (possibly partial, e.g. DELETED) object has, without normalizing it."""
    meta = _meta(obj)
    if spec.kind == "networkattachmentdefinition":
        return spec.kind, f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    return spec.kind, str(meta.get("name", ""))
