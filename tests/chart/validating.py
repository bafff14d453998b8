"""Schema checks of rendered objects, per Kubernetes version.

Kubernetes' own kinds (and CustomResourceDefinitions) are checked by ``kubernetes-validate``
in strict mode, as ``kubectl --validate=strict`` would. Kinds of other projects have no
schema there: the VolumePopulator is checked against the CRD the cluster simulator installs
(the volume-data-source-validator's shape), and the ServiceMonitor against the fields the
Prometheus Operator defines for what the chart uses (``SERVICE_MONITOR``, written here, with
unknown fields refused).

``kubernetes_validate.validate`` reads its JSON schema files again on every call (0.8 s for
one rendering); the files are read once here and handed to it from memory.
"""

from __future__ import annotations

from functools import cache
from typing import Any
from unittest import mock

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import kubernetes_validate.utils  # type: ignore[import-untyped]

from sim.kube.crds import BUILTIN_CRDS
from sim.kube.kinds import Kind
from sim.kube.validation import Validator

Obj = dict[str, Any]

_DURATION = {"type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$"}
_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "operator"],
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
SERVICE_MONITOR: Obj = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": _LABEL_SELECTOR,
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["port"],
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                        },
                    },
                },
            },
        },
    },
}

_VP_KIND = Kind(
    "populator.storage.k8s.io",
    "v1beta1",
    "VolumePopulator",
    "volumepopulators",
    namespaced=False,
    custom=True,
)


_schema_contents = cache(kubernetes_validate.utils.schema_contents)


@cache
def _volume_populator_validator(version: str) -> Validator:
    crd = next(c for c in BUILTIN_CRDS if c["spec"]["names"]["kind"] == "VolumePopulator")
    validator = Validator(version, strict=True)
    validator.register_crd(_VP_KIND, crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    return validator


def problems(obj: Obj, version: str) -> list[str]:
    """Why ``obj`` would be refused by a cluster of ``version``; empty when it is valid."""
    what = f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}"
    if obj.get("kind") == "ServiceMonitor":
        errors = jsonschema.Draft202012Validator(SERVICE_MONITOR).iter_errors(obj)
        return [f"{what}: {e.message} at {list(e.absolute_path)}" for e in errors]
    if obj.get("kind") == "VolumePopulator":
        causes = _volume_populator_validator(version).check(_VP_KIND, obj)
        return [f"{what}: {c}" for c in causes]
    try:
        with mock.patch.object(kubernetes_validate.utils, "schema_contents", _schema_contents):
            kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{what}: {exc.message} at {list(exc.absolute_path)}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"{what}: no schema ({exc.message}); add a check for this kind"]
    return []
