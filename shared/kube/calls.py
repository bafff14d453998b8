"""Kubernetes API calls on plain JSON: the resources Hoist touches, and ``Kube``.

Why raw JSON rather than kubernetes-asyncio's typed APIs: their generated models are slow
to build, spell fields in snake_case (Hoist writes patches in the API's own spelling) and do
not exist for custom resources (populators, VirtualMachines, StorageProfiles). ``Kube``
goes through ``ApiClient.call_api`` with ``_preload_content=False``, so it keeps the
client's authentication, TLS and connection pool, and hands back the JSON document.

Failures are what the typed client raises: ``ApiException`` with ``status``, ``reason``,
``body`` (and ``headers``) for a non-2xx answer; aiohttp's errors and ``TimeoutError`` for
the network. ``not_found()``, ``conflict()`` and ``status_message()`` read them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from shared.populator import GROUP, KINDS, VERSION

__all__ = [
    "CRD",
    "EVENT",
    "JSON_PATCH",
    "MERGE",
    "NAMESPACE",
    "POD",
    "POPULATORS",
    "PV",
    "PVC",
    "SECRET",
    "STORAGE_CLASS",
    "VIRTUAL_MACHINE",
    "VOLUME_POPULATOR",
    "Kube",
    "NotAnObject",
    "Obj",
    "Objs",
    "Query",
    "Resource",
    "Timeout",
    "conflict",
    "not_found",
    "status_message",
]

Obj = dict[str, Any]
# Aliases because ``Kube.list`` shadows ``list`` in the class body's annotations.
Objs = list[Obj]
Query = list[tuple[str, str]]
#: A request's time limit: seconds in total, aiohttp's detailed limits, or None for none.
Timeout = float | aiohttp.ClientTimeout | None
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class Resource:
    """A kind of object as the API serves it: where (group, version, plural) and what
    (kind; whether it lives in a namespace)."""

    group: str  # "" for the core API
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str = "", subresource: str = "") -> str:
        """The URL path of the collection (every namespace's when ``namespace`` is None), of
        one object (``name``), or of its ``subresource`` (``status``, ``log``)."""
        path = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            path += f"/namespaces/{quote(namespace, safe='')}"
        path += f"/{self.plural}"
        if name:
            path += f"/{quote(name, safe='')}"
        if subresource:
            path += f"/{subresource}"
        return path


PVC = Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")
PV = Resource("", "v1", "persistentvolumes", "PersistentVolume", namespaced=False)
POD = Resource("", "v1", "pods", "Pod")
SECRET = Resource("", "v1", "secrets", "Secret")
CONFIG_MAP = Resource("", "v1", "configmaps", "ConfigMap")
JOB = Resource("batch", "v1", "jobs", "Job")
EVENT = Resource("", "v1", "events", "Event")
NAMESPACE = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
NODE = Resource("", "v1", "nodes", "Node", namespaced=False)
STORAGE_CLASS = Resource("storage.k8s.io", "v1", "storageclasses", "StorageClass", False)
CRD = Resource(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False
)
VOLUME_POPULATOR = Resource(
    "populator.storage.k8s.io", "v1beta1", "volumepopulators", "VolumePopulator", False
)
VIRTUAL_MACHINE = Resource("kubevirt.io", "v1", "virtualmachines", "VirtualMachine")
POPULATORS: Mapping[str, Resource] = MappingProxyType(
    {k.name: Resource(GROUP, VERSION, k.plural, k.name) for k in KINDS}
)
"""Hoist's populator CR kinds, by kind name, from the contract (``shared.populator``):
this layer imports the contract, never the reverse."""


def not_found(exc: BaseException) -> bool:
    return isinstance(exc, ApiException) and exc.status == 404


def conflict(exc: BaseException) -> bool:
    return isinstance(exc, ApiException) and exc.status == 409


def status_message(exc: ApiException) -> str:
    """The ``message`` of the Kubernetes Status in an error's body ("" when there is none):
    it names the verb and the resource refused, and never quotes a Secret's data."""
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return ""
    return str(body.get("message", "")) if isinstance(body, dict) else ""


class NotAnObject(ValueError):
    """A 2xx answer that is not a JSON object: whatever answered is no Kubernetes API."""


async def read_body(response: Any) -> bytes:
    """The whole body of a raw response, which is then released; ``ApiException`` (as the
    typed client raises it) unless the status is 2xx."""
    try:
        body: bytes = await response.read()
    finally:
        response.release()
    if not 200 <= response.status <= 299:
        error = ApiException(status=response.status, reason=response.reason)
        error.body = body.decode(errors="replace")
        error.headers = response.headers
        raise error
    return body


def _object(body: bytes, path: str) -> Obj:
    if not body:
        return {}
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise NotAnObject(f"{path} did not answer with a Kubernetes JSON object")
    return doc


class Kube:
    """Raw JSON calls on one ``ApiClient``; ``timeout`` bounds each call that names none
    (None: no bound, as the typed client's default)."""

    def __init__(self, api: client.ApiClient, *, timeout: Timeout = 30.0) -> None:
        self.api = api
        self.timeout = timeout

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Any = None,
        content_type: str | None = None,
        accept: str = "application/json",
        timeout: Timeout = None,
    ) -> Any:
        """The raw aiohttp response, whatever its status; the caller reads and releases it
        (``read_body``). For streams (watches); everything else has a method below."""
        headers = {"Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        return await self.api.call_api(
            path,
            method,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout if timeout is not None else self.timeout,
        )

    async def call(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: Timeout = None,
    ) -> Obj:
        """One call; its JSON object ({} for an empty answer)."""
        response = await self.request(
            method, path, query=query, body=body, content_type=content_type, timeout=timeout
        )
        return _object(await read_body(response), path)

    async def get(
        self, res: Resource, name: str, namespace: str | None = None, *, timeout: Timeout = None
    ) -> Obj | None:
        """One object; None when it does not exist."""
        try:
            return await self.call("GET", res.path(namespace, name), timeout=timeout)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def list(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        selector: str | None = None,
        page: int | None = None,
        timeout: Timeout = None,
    ) -> tuple[Objs, str]:
        """Every object (``page`` at a time when given) and the list's resourceVersion, where
        a watch continues from. A ``continue`` token that expired mid-way (410) restarts the
        list: pages of different versions must not be mixed."""
        path = res.path(namespace)
        first: Query = [("labelSelector", selector)] if selector else []
        if page:
            first.append(("limit", str(page)))
        while True:
            items: Objs = []
            query = list(first)
            try:
                while True:
                    listed = await self.call("GET", path, query=query, timeout=timeout)
                    items.extend(listed.get("items") or [])
                    meta = listed.get("metadata") or {}
                    token = meta.get("continue")
                    if not token:
                        return items, str(meta.get("resourceVersion") or "")
                    query = [*first, ("continue", token)]
            except ApiException as exc:
                if exc.status == 410 and len(query) > len(first):
                    continue
                raise

    async def create(self, res: Resource, body: Obj, namespace: str | None = None) -> Obj:
        return await self.call("POST", res.path(namespace), body=body)

    async def replace(
        self, res: Resource, name: str, body: Obj, namespace: str | None = None
    ) -> Obj:
        return await self.call("PUT", res.path(namespace, name), body=body)

    async def patch(
        self,
        res: Resource,
        name: str,
        body: Obj | Objs,
        namespace: str | None = None,
        *,
        content_type: str = MERGE,
        subresource: str = "",
    ) -> Obj:
        """A merge patch (``content_type=JSON_PATCH`` for a JSON patch), of the object or of
        its ``subresource`` (``status``)."""
        path = res.path(namespace, name, subresource)
        return await self.call("PATCH", path, body=body, content_type=content_type)

    async def delete(
        self, res: Resource, name: str, namespace: str | None = None, *, uid: str | None = None
    ) -> bool:
        """Delete in the background (owned objects go too), only the object with ``uid``
        when given; False when it was gone already, or another object has the name now."""
        options: Obj = {"propagationPolicy": "Background"}
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            await self.call("DELETE", res.path(namespace, name), body=options)
        except ApiException as exc:
            if exc.status == 404 or (uid and exc.status == 409):
                return False
            raise
        return True

    async def log(
        self,
        namespace: str,
        pod: str,
        container: str,
        *,
        tail_lines: int = 400,
        limit_bytes: int = 16 * 1024,
    ) -> str:
        """The end of a container's log (``limit_bytes`` at most); "" when there is none
        (the pod or container gone, or not started: 404 or 400)."""
        query = [("container", container), ("tailLines", str(tail_lines))]
        response = await self.request(
            "GET", POD.path(namespace, pod, "log"), query=query, accept="text/plain"
        )
        try:
            body = await read_body(response)
        except ApiException as exc:
            if exc.status in (400, 404):
                return ""
            raise
        return body[-limit_bytes:].decode(errors="replace")

    async def proxy(
        self,
        namespace: str,
        pod: str,
        port: int,
        path: str,
        *,
        scheme: str = "https",
        timeout: Timeout = None,
    ) -> str:
        """GET ``path`` from a pod's port through the API server's pod proxy (the way to a
        pod from outside the cluster network); the body as text."""
        target = POD.path(namespace, f"{scheme}:{pod}:{port}", "proxy")
        response = await self.request(
            "GET", f"{target}/{path.lstrip('/')}", accept="*/*", timeout=timeout
        )
        return (await read_body(response)).decode(errors="replace")
