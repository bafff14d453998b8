"""Discovery documents and `kubectl get` tables.

kubectl finds resources through `/api`, `/apis` and the per-version resource lists (the
plain, unaggregated form; kubectl falls back to it when the server does not offer the
aggregated one), and asks the server to render lists as `meta.k8s.io/v1` Tables. Both are
derived from the kind registry, so a CRD shows up in `kubectl api-resources` and
`kubectl get` as soon as it is created.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from sim.kube import openapi, printers
from sim.kube.kinds import ALL_VERBS, Kind, Registry

VERSION = {
    "major": "1",
    "minor": "30",
    "gitVersion": "v1.30.0-hoist-sim",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.22.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def version(kube_version: str) -> dict[str, Any]:
    major, _, minor = kube_version.partition(".")
    return {**VERSION, "major": major, "minor": minor, "gitVersion": f"v{kube_version}.0-hoist-sim"}


def api_versions() -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": name,
        "versions": entries,
        "preferredVersion": entries[0],
    }


def api_groups(registry: Registry) -> dict[str, Any]:
    groups = [_group(name, versions) for name, versions in registry.groups().items() if name]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, name: str) -> dict[str, Any] | None:
    versions = registry.groups().get(name)
    return _group(name, versions) if versions and name else None


def resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    kinds = [k for k in registry if k.group == group and k.version == version]
    if not kinds:
        return None
    resources: list[dict[str, Any]] = []
    for kind in sorted(kinds, key=lambda k: k.plural):
        entry: dict[str, Any] = {
            "name": kind.plural,
            "singularName": kind.singular,
            "namespaced": kind.namespaced,
            "kind": kind.kind,
            "verbs": list(ALL_VERBS),
        }
        if kind.short_names:
            entry["shortNames"] = list(kind.short_names)
        if kind.categories:
            entry["categories"] = list(kind.categories)
        resources.append(entry)
        subresources = (("status",) if kind.status else ()) + kind.extra_subresources
        for sub in subresources:
            verbs = {
                "log": ["get"],
                "proxy": ["create", "delete", "get", "patch", "update"],
                "binding": ["create"],
            }.get(sub, ["get", "patch", "update"])
            resources.append(
                {
                    "name": f"{kind.plural}/{sub}",
                    "singularName": "",
                    "namespaced": kind.namespaced,
                    "kind": "Binding" if sub == "binding" else kind.kind,
                    "verbs": verbs,
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def table(kind: Kind, items: list[dict[str, Any]], list_meta: dict[str, Any]) -> dict[str, Any]:
    """A `meta.k8s.io/v1` Table, with the row objects as PartialObjectMetadata."""
    # KubeVirt installs VirtualMachine as a CRD: its columns are additionalPrinterColumns
    crd = kind.custom or kind.group == "kubevirt.io"
    columns = printers.columns_of(kind.group, kind.kind, kind.columns, crd)
    definitions = [
        {
            "name": c.name,
            "type": c.type,
            "format": c.format,
            "description": c.name,
            "priority": c.priority,
        }
        for c in columns
    ]
    rows = [
        {
            "cells": [c.cell(obj) for c in columns],
            "object": {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            },
        }
        for obj in items
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": definitions,
        "rows": rows,
    }


#: Bumped when the documents' shape changes, so no client keeps an older one it cached.
OPENAPI_REVISION = 2


def openapi_root(registry: Registry) -> dict[str, Any]:
    """`/openapi/v3`: where each group-version's document is (kubectl reads it before apply)."""
    paths = {}
    for group, versions in registry.groups().items():
        for version in versions:
            gv = f"api/{version}" if not group else f"apis/{group}/{version}"
            # the document's content changes with its kinds: clients cache by this hash
            kinds = sorted(
                f"{k.kind}/{k.crd_name}/{k.columns}"
                for k in registry
                if k.group == group and k.version == version
            )
            digest = hashlib.sha256(f"{OPENAPI_REVISION}{kinds}".encode()).hexdigest()[:16]
            paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest.upper()}"}
    return {"paths": paths}


def openapi_group_version(
    registry: Registry,
    group: str,
    version: str,
    kube_version: str,
    crd_schema: Callable[[Kind], dict[str, Any] | None],
) -> dict[str, Any] | None:
    """An OpenAPI v3 document: one PATCH operation per resource, with the GVK and the
    `fieldValidation` parameter (what kubectl checks to use server-side field validation,
    which this server does, strictly), and the kinds' schemas (`kubectl explain`)."""
    kinds = [k for k in registry if k.group == group and k.version == version]
    if not kinds:
        return None
    paths: dict[str, Any] = {}
    prefix = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    for kind in kinds:
        scope = "/namespaces/{namespace}" if kind.namespaced else ""
        operation = {
            "operationId": f"patch{kind.kind}",
            "parameters": [
                {
                    "name": "fieldValidation",
                    "in": "query",
                    "schema": {"type": "string", "uniqueItems": True},
                },
                {
                    "name": "fieldManager",
                    "in": "query",
                    "schema": {"type": "string", "uniqueItems": True},
                },
                {
                    "name": "dryRun",
                    "in": "query",
                    "schema": {"type": "string", "uniqueItems": True},
                },
            ],
            "responses": {"200": {"description": "OK"}},
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {
                "group": group,
                "version": version,
                "kind": kind.kind,
            },
        }
        paths[f"{prefix}{scope}/{kind.plural}/{{name}}"] = {"patch": operation}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (Hoist simulator)", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": openapi.schemas(kube_version, kinds, crd_schema)},
    }
