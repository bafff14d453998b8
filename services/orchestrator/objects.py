"""Create-or-get and delete-by-label on the target cluster, for any kind the pipeline makes.

Steps are repeated after every crash, so creating is always "create, or take the one that is
already there": a 409 reads the existing object back. An existing object is ours only when
its labels name this migration and VM; one that a different migration of the same plan left
behind (a failed earlier run) is stale and is deleted first, and one that Hoist did not make
is never touched: the step fails with ``TargetConflict`` instead.

The calls themselves are ``shared.kube.Kube``'s (plain JSON); what this module adds is the
ownership rules above and the pipeline's reading of failures: a refused object is
``Invalid`` (``ObjectRefused``), anything else the API server answers is ``RetryLater``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from shared import populator as contract
from shared.errors import PermanentError, RetryLater
from shared.kube import (
    CONFIG_MAP,
    JOB,
    POD,
    PVC,
    SECRET,
    VIRTUAL_MACHINE,
    Kube,
    Resource,
    status_message,
)

__all__ = [
    "CLEANUP_ORDER",
    "CONFIG_MAP",
    "JOB",
    "POD",
    "POPULATORS",
    "PVC",
    "SECRET",
    "VIRTUAL_MACHINE",
    "Conflict",
    "Invalid",
    "Objects",
    "Resource",
]

POPULATORS: Mapping[contract.Kind, Resource] = MappingProxyType(
    {k: Resource(contract.GROUP, contract.VERSION, k.plural, k.name) for k in contract.KINDS}
)
"""The API resource of each populator kind of the contract."""
CLEANUP_ORDER: tuple[Resource, ...] = (
    JOB,
    POD,
    CONFIG_MAP,
    *POPULATORS.values(),
    SECRET,
    PVC,
)
"""What a torn-down VM loses, consumers first (a pod using a claim keeps it alive; a hook's
Job first, or it would make its pod again)."""


class Conflict(PermanentError):
    """An object of that name exists and is not this VM's: the VM fails (``TargetConflict``),
    since only a person can say whether that object may go."""

    def __init__(self, kind: Resource, namespace: str, name: str, owner: str) -> None:
        super().__init__(
            f"{kind.kind} {namespace}/{name} already exists and {owner}; rename the target in "
            "the plan or remove that object, then run the plan again",
            reason="TargetConflict",
        )


class Objects:
    """One namespace of a cluster, dicts in and dicts out, with the pipeline's ownership rules.

    ``kube`` makes the calls; build it without a time limit of its own (``timeout=None``):
    a step call is bounded as a whole by the runner."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace

    async def get(self, kind: Resource, name: str) -> dict[str, Any] | None:
        try:
            return await self.kube.get(kind, name, self.namespace)
        except ApiException as exc:
            raise _temporary(exc, f"read {kind.kind} {self.namespace}/{name}") from None

    async def list(self, kind: Resource, selector: str) -> list[dict[str, Any]]:
        try:
            found, _ = await self.kube.list(kind, self.namespace, selector=selector)
        except ApiException as exc:
            if exc.status == 404:  # the kind is not served (KubeVirt or CRDs absent)
                return []
            raise _temporary(exc, f"list {kind.kind} in {self.namespace}") from None
        return found

    async def ensure(
        self, kind: Resource, body: Mapping[str, Any], *, migration_id: str, vm_id: str
    ) -> dict[str, Any]:
        """Create ``body``, or return the object of that name this VM made before.

        A stale object of an earlier migration of the same plan is deleted and ``RetryLater`` is
        raised (its deletion may take a moment: finalizers, garbage collection)."""
        name = body["metadata"]["name"]
        try:
            return await self.kube.create(kind, dict(body), self.namespace)
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
        if mine.get(contract.MIGRATION) == want.get(contract.MIGRATION) and mine.get(
            contract.VM
        ) == want.get(contract.VM):
            return existing
        if (
            mine.get(contract.MANAGED_BY) == contract.MANAGED_BY_HOIST
            and mine.get(contract.PLAN) == want.get(contract.PLAN)
            and mine.get(contract.VM) == want.get(contract.VM)
        ):
            await self.delete(kind, name)
            raise RetryLater(
                f"{kind.kind} {self.namespace}/{name} is left from an earlier run of this plan; "
                "deleting it and trying again",
                2,
            )
        owner = (
            "belongs to another VM or plan of Hoist"
            if mine.get(contract.MANAGED_BY) == contract.MANAGED_BY_HOIST
            else "was not made by Hoist"
        )
        raise Conflict(kind, self.namespace, name, owner)

    async def patch(self, kind: Resource, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A merge patch."""
        try:
            return await self.kube.patch(kind, name, dict(patch), self.namespace)
        except ApiException as exc:
            raise _temporary(exc, f"patch {kind.kind} {self.namespace}/{name}") from None

    async def delete(self, kind: Resource, name: str) -> bool:
        """Delete (background propagation: owned objects go too); False when already gone."""
        try:
            return await self.kube.delete(kind, name, self.namespace)
        except ApiException as exc:
            raise _temporary(exc, f"delete {kind.kind} {self.namespace}/{name}") from None

    async def delete_selected(self, kind: Resource, selector: str) -> int:
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

    def __init__(self, kind: Resource, namespace: str, name: str, exc: ApiException) -> None:
        super().__init__(
            f"the cluster refused {kind.kind} {namespace}/{name}: "
            f"{status_message(exc) or exc.reason}",
            reason="ObjectRefused",
        )
        self.status = exc.status


def _temporary(exc: ApiException, what: str) -> RetryLater:
    return RetryLater(f"cannot {what} ({exc.status} {exc.reason}); retried in 5 s", 5)
