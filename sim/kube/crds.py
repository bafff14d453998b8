"""CustomResourceDefinitions: creating one makes its kind servable, deleting one removes it.

The registrar is both an admitter (it checks the CRD and fills `status` with the
NamesAccepted and Established conditions a real server reports) and a store listener (once
the CRD is stored, its versions join the registry, with the CRD's openAPIV3Schema as their
validator). The kinds a migration needs from other projects (CDI's StorageProfile, the
VolumePopulator registration, Multus' NetworkAttachmentDefinition) are installed as CRDs
at start-up, the way those projects install them.
"""

from __future__ import annotations

from typing import Any

from sim.kube.errors import cause, invalid
from sim.kube.kinds import Kind, Registry
from sim.kube.store import Change, Obj, Store, now
from sim.kube.validation import Validator

GROUP = "apiextensions.k8s.io"
OPEN: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _crd(
    group: str,
    version: str,
    kind: str,
    plural: str,
    scope: str,
    schema: dict[str, Any],
    short: list[str] | None = None,
    status: bool = False,
) -> Obj:
    version_spec: dict[str, Any] = {
        "name": version,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
    }
    if status:
        version_spec["subresources"] = {"status": {}}
    names: dict[str, Any] = {
        "kind": kind,
        "plural": plural,
        "singular": kind.lower(),
        "listKind": f"{kind}List",
    }
    if short:
        names["shortNames"] = short
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "names": names, "scope": scope, "versions": [version_spec]},
    }


CLAIM_PROPERTY_SETS = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "accessModes": {"type": "array", "items": {"type": "string"}},
            "volumeMode": {"type": "string", "enum": ["Block", "Filesystem"]},
        },
    },
}

BUILTIN_CRDS: list[Obj] = [
    _crd(
        "cdi.kubevirt.io",
        "v1beta1",
        "StorageProfile",
        "storageprofiles",
        "Cluster",
        {
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "claimPropertySets": CLAIM_PROPERTY_SETS,
                        "cloneStrategy": {"type": "string"},
                        "dataImportCronSourceFormat": {"type": "string"},
                        "snapshotClass": {"type": "string"},
                    },
                },
                "status": {
                    "type": "object",
                    "properties": {
                        "claimPropertySets": CLAIM_PROPERTY_SETS,
                        "cloneStrategy": {"type": "string"},
                        "dataImportCronSourceFormat": {"type": "string"},
                        "provisioner": {"type": "string"},
                        "storageClass": {"type": "string"},
                        "snapshotClass": {"type": "string"},
                    },
                },
            },
        },
        status=True,
    ),
    _crd(
        "populator.storage.k8s.io",
        "v1beta1",
        "VolumePopulator",
        "volumepopulators",
        "Cluster",
        {
            "type": "object",
            "required": ["sourceKind"],
            "properties": {
                "sourceKind": {
                    "type": "object",
                    "required": ["kind"],
                    "properties": {"group": {"type": "string"}, "kind": {"type": "string"}},
                }
            },
        },
    ),
    _crd(
        "k8s.cni.cncf.io",
        "v1",
        "NetworkAttachmentDefinition",
        "network-attachment-definitions",
        "Namespaced",
        {
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {"config": {"type": "string"}}}
            },
        },
        short=["net-attach-def"],
    ),
]


class CrdRegistrar:
    def __init__(self, store: Store, registry: Registry, validator: Validator) -> None:
        self.store = store
        self.registry = registry
        self.validator = validator
        self.kind = registry.lookup(GROUP, "v1", "customresourcedefinitions")
        assert self.kind is not None
        store.admitters.append(self.admit)
        store.listeners.append(self.on_change)
        self._served: dict[str, list[Kind]] = {}

    def schema_of(self, kind: Kind) -> Obj | None:
        """The openAPIV3Schema a served custom kind's CRD declares for its version."""
        assert self.kind is not None
        found = self.store.find(self.kind, None, kind.crd_name)
        for version in ((found.obj.get("spec") or {}).get("versions") or []) if found else []:
            if version.get("name") == kind.version:
                schema = (version.get("schema") or {}).get("openAPIV3Schema")
                return schema if isinstance(schema, dict) else None
        return None

    def install_builtin(self) -> None:
        assert self.kind is not None
        for crd in BUILTIN_CRDS:
            if self.store.find(self.kind, None, crd["metadata"]["name"]) is None:
                self.store.create(self.kind, crd)

    def admit(self, kind: Kind, obj: Obj, old: Obj | None) -> None:
        if kind is not self.kind:
            return
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        name = obj["metadata"]["name"]
        problems = []
        if name != f"{names.get('plural')}.{spec.get('group')}":
            problems.append(
                cause(
                    "metadata.name",
                    f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
                )
            )
        versions = spec.get("versions") or []
        if sum(1 for v in versions if v.get("storage")) != 1:
            problems.append(
                cause(
                    "spec.versions",
                    "Invalid value: must have exactly one version marked as storage version",
                )
            )
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            problems.append(
                cause(
                    "spec.scope",
                    'Unsupported value: supported values: "Cluster", "Namespaced"',
                    "FieldValueNotSupported",
                )
            )
        if old is not None and (old.get("spec") or {}).get("group") != spec.get("group"):
            problems.append(cause("spec.group", "Invalid value: field is immutable"))
        if problems:
            raise invalid(kind.kind, kind.group, name, problems)
        stamp = now()
        accepted = {k: v for k, v in names.items()}
        accepted.setdefault("singular", str(names.get("kind", "")).lower())
        accepted.setdefault("listKind", f"{names.get('kind')}List")
        obj["status"] = {
            "acceptedNames": accepted,
            "storedVersions": [v["name"] for v in versions if v.get("storage")],
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                    "lastTransitionTime": stamp,
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                    "lastTransitionTime": stamp,
                },
            ],
        }

    def on_change(self, kind: Kind, change: Change) -> None:
        if kind is not self.kind:
            return
        crd = change.entry.obj
        name = crd["metadata"]["name"]
        for old_kind in self._served.pop(name, []):
            self.registry.remove(old_kind)
            self.validator.register_crd(old_kind, None)
        if change.type == "DELETED":
            if old_kinds := [k for k in self.registry if k.crd_name == name]:
                for k in old_kinds:
                    self.registry.remove(k)
            self._forget(crd)
            return
        spec = crd["spec"]
        names = spec["names"]
        served: list[Kind] = []
        for version in spec.get("versions") or []:
            if not version.get("served", True):
                continue
            new_kind = Kind(
                group=spec["group"],
                version=version["name"],
                kind=names["kind"],
                plural=names["plural"],
                namespaced=spec["scope"] == "Namespaced",
                status="status" in (version.get("subresources") or {}),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                custom=True,
                crd_name=name,
                columns=tuple(
                    (c["name"], c["jsonPath"], c.get("type", "string"), c.get("priority", 0))
                    for c in version.get("additionalPrinterColumns") or []
                    if c.get("name", "").lower() != "name"
                ),
            )
            self.registry.add(new_kind)
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            self.validator.register_crd(new_kind, schema)
            served.append(new_kind)
        self._served[name] = served

    def _forget(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        for version in spec.get("versions") or []:
            gone = Kind(
                spec.get("group", ""),
                version.get("name", ""),
                names.get("kind", ""),
                names.get("plural", ""),
                spec.get("scope") == "Namespaced",
                custom=True,
            )
            self.store.forget_kind(gone)
