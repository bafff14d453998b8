"""What the populator controller registers in a cluster: Hoist's two populator CRDs and the
``VolumePopulator`` objects that make their kinds known data sources.

Kept as Python data in this one module so the controller applies exactly what the Helm
chart will ship (the chart exports ``manifests()``); nothing else spells these objects.
Field names are Forklift's (``engineUrl``, ``engineSecretName``, ``diskId``; ``identityUrl``,
``secretName``, ``imageId``; ``transferNetwork``), under Hoist's own API group, so Forklift
and Hoist can be installed in the same cluster.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from services.orchestrator import naming

Obj = dict[str, Any]

DIGEST_ANNOTATION = f"{naming.GROUP}/manifest-digest"
"""On each registered object: digest of the manifest it was last written from, so a start
that finds the same digest writes nothing (registration is idempotent, and cheap)."""

_STRING: Obj = {"type": "string"}
_NON_EMPTY: Obj = {"type": "string", "minLength": 1}
_TRANSFER_NETWORK: Obj = {
    "type": "string",
    "description": "namespace/name of a Multus NetworkAttachmentDefinition the populator "
    "pod copies over (name alone: the claim's namespace).",
}

STATUS_SCHEMA: Obj = {
    "type": "object",
    "description": "Written by the populator controller only.",
    "properties": {
        "phase": {
            "type": "string",
            "enum": [
                naming.PHASE_PENDING,
                naming.PHASE_RUNNING,
                naming.PHASE_SUCCEEDED,
                naming.PHASE_FAILED,
            ],
            "description": "Failed and Succeeded are final.",
        },
        "progress": {
            "type": "string",
            "description": "Integer percent as a string (Forklift's field); 100 when done.",
        },
        "reason": {"type": "string", "description": "CamelCase cause of the phase."},
        "message": {"type": "string"},
        "log": {
            "type": "string",
            "description": "The end (16 KiB at most) of the last failed populator pod's log.",
        },
        "recreations": {
            "type": "integer",
            "minimum": 0,
            "description": "How often a failed populator pod was replaced.",
        },
        "pod": {"type": "string", "description": "The populator pod (the latest)."},
        "claimUID": {
            "type": "string",
            "description": "UID of the claim this status is about (a status about another "
            "claim, of an earlier run, is stale and is reset).",
        },
    },
}


def _crd(kind: str, plural: str, spec: Obj, required: list[str], source_column: Obj) -> Obj:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{naming.GROUP}",
            "labels": {
                "app.kubernetes.io/managed-by": "hoist",
                "app.kubernetes.io/part-of": "hoist",
            },
        },
        "spec": {
            "group": naming.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "plural": plural,
                "singular": kind.lower(),
                "listKind": f"{kind}List",
                "categories": ["hoist"],
            },
            "versions": [
                {
                    "name": naming.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
                        source_column,
                        {"name": "Reason", "type": "string", "jsonPath": ".status.reason"},
                        {
                            "name": "Age",
                            "type": "date",
                            "jsonPath": ".metadata.creationTimestamp",
                        },
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": required,
                                    "properties": spec,
                                },
                                "status": STATUS_SCHEMA,
                            },
                        }
                    },
                }
            ],
        },
    }


def crds() -> list[Obj]:
    """The two CustomResourceDefinitions (fresh copies: callers may change them)."""
    return [
        _crd(
            naming.OVIRT_KIND,
            naming.OVIRT_PLURAL,
            {
                "engineUrl": {**_NON_EMPTY, "description": "https://engine/ovirt-engine/api"},
                "engineSecretName": {
                    **_NON_EMPTY,
                    "description": "Secret (in this namespace) with user, password, cacert.",
                },
                "diskId": _NON_EMPTY,
                "transferNetwork": _TRANSFER_NETWORK,
            },
            ["engineUrl", "engineSecretName", "diskId"],
            {"name": "Disk", "type": "string", "jsonPath": ".spec.diskId", "priority": 1},
        ),
        _crd(
            naming.OPENSTACK_KIND,
            naming.OPENSTACK_PLURAL,
            {
                "identityUrl": {**_NON_EMPTY, "description": "Keystone URL (…/v3)."},
                "secretName": {
                    **_NON_EMPTY,
                    "description": "Secret (in this namespace) with the OpenStack credentials.",
                },
                "imageId": _NON_EMPTY,
                "transferNetwork": _TRANSFER_NETWORK,
            },
            ["identityUrl", "secretName", "imageId"],
            {"name": "Image", "type": "string", "jsonPath": ".spec.imageId", "priority": 1},
        ),
    ]


def volume_populators() -> list[Obj]:
    """The VolumePopulator registrations: without them the data-source validator warns
    ``UnrecognizedDataSourceKind`` on every claim (it blocks nothing)."""
    return [
        {
            "apiVersion": "populator.storage.k8s.io/v1beta1",
            "kind": "VolumePopulator",
            "metadata": {
                "name": naming.VOLUME_POPULATOR[kind],
                "labels": {"app.kubernetes.io/managed-by": "hoist"},
            },
            "sourceKind": {"group": naming.GROUP, "kind": kind},
        }
        for kind in (naming.OVIRT_KIND, naming.OPENSTACK_KIND)
    ]


def cluster_role_rules() -> list[Obj]:
    """What the controller's service account must be allowed (a ClusterRole's ``rules``):
    it works in every namespace a plan targets, and registers cluster-scoped objects."""
    return [
        {
            "apiGroups": [""],
            "resources": ["persistentvolumeclaims"],
            "verbs": ["get", "list", "watch", "create", "patch", "delete"],
        },
        {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["get", "patch"]},
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
            "apiGroups": [naming.GROUP],
            "resources": [naming.OVIRT_PLURAL, naming.OPENSTACK_PLURAL],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": [naming.GROUP],
            "resources": [f"{naming.OVIRT_PLURAL}/status", f"{naming.OPENSTACK_PLURAL}/status"],
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


def manifests() -> list[Obj]:
    """Everything registered, CRDs first (the order to apply them in)."""
    return [*crds(), *volume_populators()]


def digest(manifest: Obj) -> str:
    """Digest of a manifest without its digest annotation (stable across runs)."""
    body = copy.deepcopy(manifest)
    (body.get("metadata") or {}).get("annotations", {}).pop(DIGEST_ANNOTATION, None)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
