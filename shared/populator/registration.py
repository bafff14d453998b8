"""What the controller registers in a cluster, generated from the kind, spec and status
tables: Hoist's populator CRDs and the ``VolumePopulator`` objects that make their kinds
known data sources. The Helm chart ships the very same objects (``tools/chartgen.py``).

``digest`` must stay stable: a changed digest makes every upgraded controller rewrite the
objects (``tests/shared/test_populator_contract.py`` holds today's values).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from shared.populator import stages
from shared.populator.keys import MANAGED_BY, MANAGED_BY_HOIST
from shared.populator.kinds import GROUP, KINDS, PREFIX, VERSION, Kind, Obj
from shared.populator.status import STATUS_FIELDS

DIGEST_ANNOTATION = f"{PREFIX}manifest-digest"
"""On each registered object: digest of the manifest it was last written from, so a start
that finds the same digest writes nothing (registration is idempotent, and cheap)."""


def _status_schema(kind: Kind) -> Obj:
    properties = {key: copy.deepcopy(schema) for _, key, schema in STATUS_FIELDS}
    if kind.stages:
        properties[stages.STAGES] = stages.stages_schema()
        properties[stages.FAILED_CHECKPOINT] = stages.failed_schema()
    return {
        "type": "object",
        "description": "Written by the populator controller only.",
        "properties": properties,
    }


def _crd(kind: Kind) -> Obj:
    fields = kind.spec.FIELDS
    title, key = kind.column
    column = {"name": title, "type": "string", "jsonPath": f".spec.{key}", "priority": 1}
    properties: Obj = {f.key: f.schema() for f in fields}
    spec_schema = {
        "type": "object",
        "required": [f.key for f in fields if f.required],
        "properties": properties,
    }
    if kind.stages:
        properties[stages.CHECKPOINTS] = stages.checkpoint_schema()
        properties[stages.FINAL_CHECKPOINT] = {
            "type": "boolean",
            "description": "The last checkpoint is the final stage (the source VM is off).",
        }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{kind.plural}.{GROUP}",
            "labels": {MANAGED_BY: MANAGED_BY_HOIST, "app.kubernetes.io/part-of": "hoist"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.name,
                "plural": kind.plural,
                "singular": kind.name.lower(),
                "listKind": f"{kind.name}List",
                "categories": ["hoist"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
                        column,
                        {"name": "Reason", "type": "string", "jsonPath": ".status.reason"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["spec"],
                            "properties": {"spec": spec_schema, "status": _status_schema(kind)},
                        }
                    },
                }
            ],
        },
    }


def crds() -> list[Obj]:
    """The CustomResourceDefinitions (fresh copies: callers may change them)."""
    return [_crd(kind) for kind in KINDS]


def volume_populators() -> list[Obj]:
    """The VolumePopulator registrations: without them the data-source validator warns
    ``UnrecognizedDataSourceKind`` on every claim (it blocks nothing)."""
    return [
        {
            "apiVersion": "populator.storage.k8s.io/v1beta1",
            "kind": "VolumePopulator",
            "metadata": {
                "name": kind.volume_populator,
                "labels": {MANAGED_BY: MANAGED_BY_HOIST},
            },
            "sourceKind": {"group": GROUP, "kind": kind.name},
        }
        for kind in KINDS
    ]


def manifests() -> list[Obj]:
    """Everything registered, CRDs first (the order to apply them in)."""
    return [*crds(), *volume_populators()]


def digest(manifest: Mapping[str, Any]) -> str:
    """Digest of a manifest without its digest annotation (stable across runs)."""
    body = copy.deepcopy(dict(manifest))
    (body.get("metadata") or {}).get("annotations", {}).pop(DIGEST_ANNOTATION, None)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
