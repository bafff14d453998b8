"""Schema validation: what a real cluster refuses with 422, this one refuses too.

Core kinds are checked against the upstream JSON schemas that the PyPI package
`kubernetes-validate` ships per Kubernetes version (default 1.30, `strict` so unknown fields
are refused the way `kubectl --validate=strict` / `fieldValidation=Strict` refuses them);
VirtualMachine against KubeVirt's published OpenAPI document; custom resources against the
openAPIV3Schema of their CRD. Validators are compiled once per kind because compiling a
schema costs far more than using it.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

from sim.kube.errors import cause
from sim.kube.kinds import Kind

KUBEVIRT_SWAGGER = Path(__file__).parent / "schemas" / "kubevirt-swagger.json"
MAX_CAUSES = 8


def _path(error: jsonschema.ValidationError) -> str:
    parts: list[str] = []
    for part in error.absolute_path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts) or "<root>"


def _causes(validator: Any, obj: dict[str, Any]) -> list[dict[str, str]]:
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    result: list[dict[str, str]] = []
    for error in errors[:MAX_CAUSES]:
        if error.validator == "additionalProperties":
            result.append(cause(_path(error), error.message, "FieldValueNotSupported"))
        elif error.validator == "required":
            result.append(
                cause(_path(error), f"Required value: {error.message}", "FieldValueRequired")
            )
        else:
            result.append(cause(_path(error), error.message))
    return result


def _strict(schema: Any) -> Any:
    """Refuse unknown fields in a swagger/CRD schema that merely lists its properties."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


class Validator:
    """Compiled validators for one Kubernetes version; `check()` returns 422 causes."""

    def __init__(self, kube_version: str = "1.30", *, strict: bool = True) -> None:
        self.kube_version = kube_version
        self.strict = strict
        self._dir = self._schema_dir(kube_version, strict)
        self._compiled: dict[tuple[str, str], Any] = {}
        self._custom: dict[tuple[str, str, str], Any] = {}
        self._registry: Registry | None = None

    @staticmethod
    def _schema_dir(version: str, strict: bool) -> Any:
        root = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
        wanted = tuple(int(p) for p in version.lstrip("v").split(".")[:2])
        available = []
        for entry in root.iterdir():
            match = re.match(r"^v(\d+)\.(\d+)\.\d+-local(-strict)?$", entry.name)
            if match and bool(match.group(3)) == strict:
                available.append(((int(match.group(1)), int(match.group(2))), entry))
        usable = sorted((v, e) for v, e in available if v <= wanted)
        if not usable:
            raise ValueError(f"kubernetes-validate has no schemas for Kubernetes {version}")
        return usable[-1][1]

    def _core(self, kind: Kind) -> Any | None:
        key = (kind.group, kind.kind)
        if key not in self._compiled:
            short_group = kind.group.split(".")[0] if kind.group else ""
            api = f"{short_group}-{kind.version}" if short_group else kind.version
            file = self._dir.joinpath(f"{kind.kind.lower()}-{api}.json")
            if not file.is_file():
                self._compiled[key] = None
            else:
                if self._registry is None:
                    definitions = json.loads(self._dir.joinpath("_definitions.json").read_text())
                    self._registry = Resource.from_contents(definitions) @ Registry()
                schema = json.loads(file.read_text())
                registry = Resource.from_contents(schema) @ self._registry
                self._compiled[key] = jsonschema.Draft202012Validator(schema, registry=registry)
        return self._compiled[key]

    def check(self, kind: Kind, obj: dict[str, Any]) -> list[dict[str, str]]:
        """Causes why `obj` is invalid; empty when it is valid (or no schema is known)."""
        if kind.custom:
            validator = self._custom.get((kind.group, kind.kind, kind.version))
        elif kind.group == "kubevirt.io":
            validator = _kubevirt(kind.kind, self.strict)
        else:
            validator = self._core(kind)
        if validator is None:
            return []
        return _causes(validator, obj)

    def register_crd(self, kind: Kind, schema: dict[str, Any] | None) -> None:
        key = (kind.group, kind.kind, kind.version)
        if schema is None:
            self._custom.pop(key, None)
            return
        body = _strict(schema) if self.strict else schema
        body = dict(body)
        props = dict(body.get("properties") or {})
        # The API server owns these; a CRD schema rarely spells them out.
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props["metadata"] = {"type": "object"}
        body["properties"] = props
        self._custom[key] = jsonschema.Draft7Validator(body)


@cache
def _kubevirt(kind: str, strict: bool) -> Any | None:
    document = json.loads(KUBEVIRT_SWAGGER.read_text())
    name = f"v1.{kind}"
    if name not in document["definitions"]:
        return None
    definitions = _strict(document["definitions"]) if strict else document["definitions"]
    # ObjectMeta is checked by the server itself, and its swagger form is not strict-safe
    # (the server adds fields such as managedFields the document may not list).
    definitions["k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta"] = {"type": "object"}
    schema = {"$ref": f"#/definitions/{name}", "definitions": definitions}
    return jsonschema.Draft4Validator(schema)
