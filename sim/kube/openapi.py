"""The schemas of the OpenAPI v3 documents (`/openapi/v3/<group-version>`).

`kubectl explain` reads a kind's schema from its group-version's document (the component
whose `x-kubernetes-group-version-kind` names it) and follows its references; `kubectl
apply` reads the same documents. The schemas come from where the simulator's validation
gets them, so what `explain` describes is what the server enforces: the upstream
definitions of PyPI `kubernetes-validate` for the built-in kinds, KubeVirt's published
swagger for VirtualMachine, and each CRD's `openAPIV3Schema` for custom resources.
Each document holds the closure of its kinds' definitions, with references rewritten to
`#/components/schemas/...` and wrapped in `allOf` as the API server publishes them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sim.kube.kinds import Kind
from sim.kube.validation import KUBEVIRT_SWAGGER, Validator

Obj = dict[str, Any]
PREFIX = "#/components/schemas/"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


@functools.cache
def _upstream(kube_version: str) -> dict[str, Obj]:
    folder = Validator._schema_dir(kube_version, strict=False)
    definitions = json.loads(folder.joinpath("_definitions.json").read_text())["$defs"]
    return {name: _v3(schema, "#/$defs/") for name, schema in definitions.items()}


@functools.cache
def _kubevirt() -> dict[str, Obj]:
    swagger = json.loads(Path(KUBEVIRT_SWAGGER).read_text())
    return {name: _v3(schema, "#/definitions/") for name, schema in swagger["definitions"].items()}


def _v3(schema: Any, old_prefix: str) -> Any:
    """A definition in OpenAPI v3 form: component references, one type, allOf-wrapped refs."""
    if isinstance(schema, list):
        return [_v3(item, old_prefix) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _v3(value, old_prefix) for key, value in schema.items() if key != "$ref"}
    kind = out.get("type")
    if isinstance(kind, list):
        real = [t for t in kind if t != "null"]
        if real:
            out["type"] = real[0]
        else:
            out.pop("type")
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = PREFIX + ref.removeprefix(old_prefix)
        if any(k in out for k in ("description", "default")):
            out["allOf"] = [{"$ref": target}]
        else:
            out["$ref"] = target
    return out


def _refs(schema: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith(PREFIX):
            found.add(ref.removeprefix(PREFIX))
        for value in schema.values():
            found |= _refs(value)
    elif isinstance(schema, list):
        for item in schema:
            found |= _refs(item)
    return found


def _closure(roots: dict[str, Obj], pool: dict[str, Obj]) -> dict[str, Obj]:
    out = dict(roots)
    todo = [ref for schema in roots.values() for ref in _refs(schema)]
    while todo:
        name = todo.pop()
        if name in out or name not in pool:
            continue
        out[name] = pool[name]
        todo += _refs(pool[name])
    return out


def _gvk(kind: Kind) -> list[Obj]:
    return [{"group": kind.group, "version": kind.version, "kind": kind.kind}]


def _crd_component(kind: Kind, schema: Obj | None) -> Obj:
    body: Obj = dict(_v3(dict(schema or {"type": "object"}), ""))
    props = dict(body.get("properties") or {})
    props["apiVersion"] = {
        "type": "string",
        "description": "APIVersion defines the versioned schema of this representation of "
        "an object.",
    }
    props["kind"] = {
        "type": "string",
        "description": "Kind is a string value representing the REST resource this object "
        "represents.",
    }
    props["metadata"] = {
        "allOf": [{"$ref": PREFIX + OBJECT_META}],
        "description": "Standard object's metadata.",
    }
    body["properties"] = props
    body.setdefault("type", "object")
    body["x-kubernetes-group-version-kind"] = _gvk(kind)
    return body


def schemas(
    kube_version: str,
    kinds: list[Kind],
    crd_schema: Callable[[Kind], Obj | None],
) -> dict[str, Obj]:
    """components.schemas of one group-version: its kinds and everything they reference."""
    upstream = _upstream(kube_version)
    roots: dict[str, Obj] = {}
    pool = upstream
    for kind in kinds:
        if kind.custom:
            name = f"{_reverse(kind.group)}.{kind.version}.{kind.kind}"
            roots[name] = _crd_component(kind, crd_schema(kind))
        elif kind.group == "kubevirt.io":
            pool = {**_kubevirt(), **upstream}
            component = dict(pool.get(f"{kind.version}.{kind.kind}") or {"type": "object"})
            component["x-kubernetes-group-version-kind"] = _gvk(kind)
            roots[f"io.kubevirt.{kind.version}.{kind.kind}"] = component
        else:
            for name, schema in upstream.items():
                if _gvk(kind)[0] in schema.get("x-kubernetes-group-version-kind", []):
                    roots[name] = schema
                    break
    return _closure(roots, pool)


def _reverse(group: str) -> str:
    """How the API server names a CRD's component: the group reversed (`io.hoist`)."""
    return ".".join(reversed(group.split(".")))
