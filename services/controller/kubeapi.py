"""The Kubernetes calls of the populator controller, on plain JSON dicts.

kubernetes-asyncio's generated models are slow to build and spell fields in snake_case;
the controller reads a handful of fields and writes patches in the API's own spelling, so
every call here asks for the raw response (``_preload_content=False``) and returns the
JSON document. Errors are raised as ``ApiException`` with the status, as the client does;
"not found" on a read is ``None``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from shared import populator as contract

Obj = dict[str, Any]
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
REQUEST_TIMEOUT = 30.0
LOG_LINES = 400
LOG_BYTES = contract.Status.LOG_LIMIT
"""Of a failed pod's log, what its CR's status can hold."""


def not_found(exc: BaseException) -> bool:
    return isinstance(exc, ApiException) and exc.status == 404


def conflict(exc: BaseException) -> bool:
    return isinstance(exc, ApiException) and exc.status == 409


async def _read(response: Any) -> bytes:
    try:
        body: bytes = await response.read()
    finally:
        response.release()
    if not 200 <= response.status <= 299:
        error = ApiException(status=response.status, reason=response.reason)
        error.body = body.decode(errors="replace")
        raise error
    return body


async def call(method: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Obj:
    """One API call; its JSON answer."""
    kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
    response = await method(*args, _preload_content=False, **kwargs)
    body = await _read(response)
    return json.loads(body) if body else {}


async def read(method: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Obj | None:
    """A GET; ``None`` when the object does not exist."""
    try:
        return await call(method, *args, **kwargs)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _plural(kind: str) -> str:
    """The plural of a populator kind's name (``KeyError`` for another kind)."""
    found = contract.kind_named(kind)
    if found is None:
        raise KeyError(kind)
    return found.plural


class Kube:
    """The API groups the controller uses, on one ``ApiClient``."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.storage = client.StorageV1Api(api)
        self.extensions = client.ApiextensionsV1Api(api)

    # --- claims, volumes, classes, secrets -----------------------------------------------

    async def claim(self, namespace: str, name: str) -> Obj | None:
        return await read(self.core.read_namespaced_persistent_volume_claim, name, namespace)

    async def create_claim(self, namespace: str, body: Obj) -> Obj:
        return await call(self.core.create_namespaced_persistent_volume_claim, namespace, body)

    async def patch_claim(
        self, namespace: str, name: str, body: Obj | list[Obj], content_type: str = MERGE
    ) -> Obj:
        return await call(
            self.core.patch_namespaced_persistent_volume_claim,
            name,
            namespace,
            body,
            _content_type=content_type,
        )

    async def delete_claim(self, namespace: str, name: str, uid: str | None = None) -> bool:
        """Delete (only the one with ``uid`` when given); False when it was not there."""
        return await self._delete(
            self.core.delete_namespaced_persistent_volume_claim, namespace, name, uid
        )

    async def volume(self, name: str) -> Obj | None:
        return await read(self.core.read_persistent_volume, name)

    async def patch_volume(self, name: str, body: Obj) -> Obj:
        return await call(self.core.patch_persistent_volume, name, body, _content_type=MERGE)

    async def storage_class(self, name: str) -> Obj | None:
        return await read(self.storage.read_storage_class, name)

    async def secret_exists(self, namespace: str, name: str) -> bool:
        """Whether the Secret exists. Only its metadata is kept: the controller never
        holds credentials (the pod gets them through ``envFrom``)."""
        found = await read(self.core.read_namespaced_secret, name, namespace)
        return found is not None

    # --- pods ----------------------------------------------------------------------------

    async def pod(self, namespace: str, name: str) -> Obj | None:
        return await read(self.core.read_namespaced_pod, name, namespace)

    async def create_pod(self, namespace: str, body: Obj) -> Obj:
        return await call(self.core.create_namespaced_pod, namespace, body)

    async def delete_pod(self, namespace: str, name: str, uid: str | None = None) -> bool:
        return await self._delete(self.core.delete_namespaced_pod, namespace, name, uid)

    async def pod_log(self, namespace: str, name: str, container: str) -> str:
        """The end of a container's log (``LOG_BYTES`` at most); empty when unavailable."""
        try:
            response = await self.core.read_namespaced_pod_log(
                name,
                namespace,
                container=container,
                tail_lines=LOG_LINES,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            )
            body = await _read(response)
        except ApiException as exc:
            if exc.status in (400, 404):
                return ""
            raise
        return body[-LOG_BYTES:].decode(errors="replace")

    # --- populator custom resources ------------------------------------------------------

    async def populator(self, kind: str, namespace: str, name: str) -> Obj | None:
        return await read(
            self.custom.get_namespaced_custom_object,
            contract.GROUP,
            contract.VERSION,
            namespace,
            _plural(kind),
            name,
        )

    async def patch_populator_status(self, kind: str, namespace: str, name: str, body: Obj) -> Obj:
        return await call(
            self.custom.patch_namespaced_custom_object_status,
            contract.GROUP,
            contract.VERSION,
            namespace,
            _plural(kind),
            name,
            body,
            _content_type=MERGE,
        )

    # --- events --------------------------------------------------------------------------

    async def create_event(self, namespace: str, body: Obj) -> Obj:
        return await call(self.core.create_namespaced_event, namespace, body)

    async def patch_event(self, namespace: str, name: str, body: Obj) -> Obj:
        return await call(
            self.core.patch_namespaced_event, name, namespace, body, _content_type=MERGE
        )

    # --- helpers -------------------------------------------------------------------------

    async def _delete(
        self,
        method: Callable[..., Awaitable[Any]],
        namespace: str,
        name: str,
        uid: str | None,
    ) -> bool:
        options: Obj = {"propagationPolicy": "Background"}
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            await call(method, name, namespace, body=options)
        except ApiException as exc:
            if exc.status == 404 or (uid and exc.status == 409):
                return False  # gone already, or another object by that name now
            raise
        return True
