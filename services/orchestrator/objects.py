"""Create-or-get and delete-by-label on the target cluster, for any kind the pipeline makes.

Steps are repeated after every crash, so creating is always "create, or take the one that is
already there": a 409 reads the existing object back. An existing object is ours only when
its labels name this migration and VM; one that a different migration of the same plan left
behind (a failed earlier run) is stale and is deleted first, and one that Hoist did not make
is never touched: the step fails with ``TargetConflict`` instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from services.orchestrator import naming
from shared import labels
from shared.errors import PermanentError, RetryLater


@dataclass(frozen=True)
class Kind:
    group: str  # "" for the core API
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


PVC = Kind("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")
POD = Kind("", "v1", "pods", "Pod")
SECRET = Kind("", "v1", "secrets", "Secret")
VIRTUAL_MACHINE = Kind("kubevirt.io", "v1", "virtualmachines", "VirtualMachine")
OVIRT_POPULATOR = Kind(naming.GROUP, naming.VERSION, naming.OVIRT_PLURAL, naming.OVIRT_KIND)
OPENSTACK_POPULATOR = Kind(
    naming.GROUP, naming.VERSION, naming.OPENSTACK_PLURAL, naming.OPENSTACK_KIND
)
POPULATORS = {k.kind: k for k in (OVIRT_POPULATOR, OPENSTACK_POPULATOR)}
CLEANUP_ORDER = (POD, OVIRT_POPULATOR, OPENSTACK_POPULATOR, SECRET, PVC)
"""What a torn-down VM loses, consumers first (a pod using a claim keeps it alive)."""


class Conflict(PermanentError):
    """An object of that name exists and is not this VM's: the VM fails (``TargetConflict``),
    since only a person can say whether that object may go."""

    def __init__(self, kind: Kind, namespace: str, name: str, owner: str) -> None:
        super().__init__(
            f"{kind.kind} {namespace}/{name} already exists and {owner}; rename the target in "
            "the plan or remove that object, then run the plan again",
            reason="TargetConflict",
        )


class Objects:
    """Typed-free access to one namespace of a cluster (dicts in, dicts out)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace

    def _path(self, kind: Kind, name: str = "") -> str:
        base = f"/api/{kind.version}" if not kind.group else f"/apis/{kind.group}/{kind.version}"
        path = f"{base}/namespaces/{self.namespace}/{kind.plural}"
        return f"{path}/{name}" if name else path

    async def _call(
        self,
        method: str,
        path: str,
        body: object = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        return await self.api.call_api(
            path,
            method,
            query_params=query or [],
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            response_types_map={200: "object", 201: "object", 202: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _preload_content=True,
        )

    async def get(self, kind: Kind, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self._call("GET", self._path(kind, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _temporary(exc, f"read {kind.kind} {self.namespace}/{name}") from None
        return found

    async def list(self, kind: Kind, selector: str) -> list[dict[str, Any]]:
        try:
            found = await self._call("GET", self._path(kind), query=[("labelSelector", selector)])
        except ApiException as exc:
            if exc.status == 404:  # the kind is not served (KubeVirt or CRDs absent)
                return []
            raise _temporary(exc, f"list {kind.kind} in {self.namespace}") from None
        return list(found.get("items") or [])

    async def ensure(
        self, kind: Kind, body: Mapping[str, Any], *, migration_id: str, vm_id: str
    ) -> dict[str, Any]:
        """Create ``body``, or return the object of that name this VM made before.

        A stale object of an earlier migration of the same plan is deleted and ``RetryLater`` is
        raised (its deletion may take a moment: finalizers, garbage collection)."""
        name = body["metadata"]["name"]
        try:
            created: dict[str, Any] = await self._call("POST", self._path(kind), dict(body))
            return created
        except ApiException as exc:
            if exc.status != 409:
                if exc.status in (400, 403, 422):
                    raise Invalid(kind, self.namespace, name, exc) from None
                raise _temporary(exc, f"create {kind.kind} {self.namespace}/{name}") from None
        existing = await self.get(kind, name)
        if existing is None:
            raise RetryLater(
                f"{kind.kind} {self.namespace}/{name} was being deleted; trying again", 1
            )
        mine = existing["metadata"].get("labels") or {}
        want = body["metadata"].get("labels") or {}
        if mine.get(labels.MIGRATION) == want.get(labels.MIGRATION) and mine.get(
            labels.VM
        ) == want.get(labels.VM):
            return existing
        if (
            mine.get(labels.MANAGED_BY) == labels.MANAGED_BY_HOIST
            and mine.get(labels.PLAN) == want.get(labels.PLAN)
            and mine.get(labels.VM) == want.get(labels.VM)
        ):
            await self.delete(kind, name)
            raise RetryLater(
                f"{kind.kind} {self.namespace}/{name} is left from an earlier run of this plan; "
                "deleting it and trying again",
                2,
            )
        owner = (
            "belongs to another VM or plan of Hoist"
            if mine.get(labels.MANAGED_BY) == labels.MANAGED_BY_HOIST
            else "was not made by Hoist"
        )
        raise Conflict(kind, self.namespace, name, owner)

    async def patch(self, kind: Kind, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        try:
            patched: dict[str, Any] = await self._call(
                "PATCH",
                self._path(kind, name),
                dict(patch),
                content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            raise _temporary(exc, f"patch {kind.kind} {self.namespace}/{name}") from None
        return patched

    async def delete(self, kind: Kind, name: str) -> bool:
        """Delete (background propagation: owned objects go too); False when already gone."""
        try:
            await self._call(
                "DELETE",
                self._path(kind, name),
                {"propagationPolicy": "Background"},
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise _temporary(exc, f"delete {kind.kind} {self.namespace}/{name}") from None
        return True

    async def delete_selected(self, kind: Kind, selector: str) -> int:
        """Delete every object of ``kind`` the selector names; how many were still there."""
        count = 0
        for obj in await self.list(kind, selector):
            if obj["metadata"].get("deletionTimestamp"):
                count += 1
                continue
            if await self.delete(kind, obj["metadata"]["name"]):
                count += 1
        return count


class Invalid(PermanentError):
    """The API server refused an object Hoist built (422/400/403): the VM fails
    (``ObjectRefused``), as building the same object again is refused again."""

    def __init__(self, kind: Kind, namespace: str, name: str, exc: ApiException) -> None:
        super().__init__(
            f"the cluster refused {kind.kind} {namespace}/{name}: {_message(exc)}",
            reason="ObjectRefused",
        )
        self.status = exc.status


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)


def _temporary(exc: ApiException, what: str) -> RetryLater:
    return RetryLater(f"cannot {what} ({exc.status} {exc.reason}); retried in 5 s", 5)
