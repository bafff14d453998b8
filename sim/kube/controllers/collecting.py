"""The garbage collector: ownerReferences decide what dies with what.

As in Kubernetes: a dependent whose owners are all gone is deleted (background
propagation); an owner deleted with `propagationPolicy: Foreground` waits, with the
`foregroundDeletion` finalizer, until its dependents are gone; with `Orphan` its dependents
lose the reference and live on. Hoist relies on this for cleanup: prime PVCs and populator
pods are owned by the user's PVC, so deleting a plan's claims cascades.

The collector keeps two indexes (uid -> object, owner uid -> dependents) from the store's
write listener, and does its work in its own task: a listener must never write.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sim.kube.controllers import Controller
from sim.kube.errors import ApiError
from sim.kube.kinds import Kind
from sim.kube.store import Change, Obj

Ref = tuple[tuple[str, str], str, str]  # (kind key, namespace, name)


class GarbageCollector(Controller):
    name = "gc"

    def __init__(self, cluster: Any) -> None:
        super().__init__(cluster)
        self._by_uid: dict[str, Ref] = {}
        self._dependents: dict[str, set[str]] = {}
        self._work: asyncio.Queue[str] = asyncio.Queue()
        for kind in self.cluster.registry:
            for entry in self.store.scan(kind):
                self._index(kind, entry.obj, None)
        self.store.listeners.append(self._on_change)

    async def shutdown(self) -> None:
        if self._on_change in self.store.listeners:
            self.store.listeners.remove(self._on_change)

    def _index(self, kind: Kind, obj: Obj, old: Obj | None) -> None:
        meta = obj["metadata"]
        uid = meta["uid"]
        self._by_uid[uid] = (kind.key, meta.get("namespace", ""), meta["name"])
        for ref in meta.get("ownerReferences") or []:
            self._dependents.setdefault(ref["uid"], set()).add(uid)
            self._work.put_nowait(uid)
        if old is not None:
            still = {ref["uid"] for ref in meta.get("ownerReferences") or []}
            for ref in old["metadata"].get("ownerReferences") or []:
                if ref["uid"] not in still:
                    self._dependents.get(ref["uid"], set()).discard(uid)

    def _on_change(self, kind: Kind, change: Change) -> None:
        obj = change.entry.obj
        uid = obj["metadata"]["uid"]
        if change.type == "DELETED":
            self._by_uid.pop(uid, None)
            for ref in obj["metadata"].get("ownerReferences") or []:
                self._dependents.get(ref["uid"], set()).discard(uid)
                # The owner may be waiting (foreground) for this dependent to go.
                self._work.put_nowait(ref["uid"])
            for dependent in self._dependents.pop(uid, set()):
                self._work.put_nowait(dependent)
            return
        self._index(kind, obj, change.old)
        finalizers = obj["metadata"].get("finalizers") or []
        if obj["metadata"].get("deletionTimestamp") and (
            "foregroundDeletion" in finalizers or "orphan" in finalizers
        ):
            self._work.put_nowait(uid)

    def _lookup(self, uid: str) -> tuple[Kind, Obj] | None:
        ref = self._by_uid.get(uid)
        if ref is None:
            return None
        kind = self.cluster.registry.by_kind(*ref[0])
        if kind is None:
            return None
        found = self.store.find(kind, ref[1] or None, ref[2])
        if found is None or found.obj["metadata"]["uid"] != uid:
            return None
        return kind, found.obj

    async def run(self) -> None:
        while True:
            uid = await self._work.get()
            try:
                self._process(uid)
            except ApiError:
                # Somebody else changed or deleted it first: the next event brings us back.
                continue

    def _process(self, uid: str) -> None:
        found = self._lookup(uid)
        if found is None:
            return
        kind, obj = found
        meta = obj["metadata"]
        finalizers = meta.get("finalizers") or []
        if meta.get("deletionTimestamp") and "orphan" in finalizers:
            self._orphan(uid)
            self._drop_finalizer(kind, obj, "orphan")
            return
        if meta.get("deletionTimestamp") and "foregroundDeletion" in finalizers:
            dependents = [d for d in self._dependents.get(uid, set()) if self._lookup(d)]
            for dependent in dependents:
                child = self._lookup(dependent)
                if child and not child[1]["metadata"].get("deletionTimestamp"):
                    self._delete(child[0], child[1], "Foreground")
            if not dependents:
                self._drop_finalizer(kind, obj, "foregroundDeletion")
            return
        owners = meta.get("ownerReferences") or []
        if not owners:
            return
        alive = [ref for ref in owners if self._lookup(ref["uid"]) is not None]
        if not alive:
            self._delete(kind, obj, "Background")
        elif len(alive) < len(owners):
            keep = {ref["uid"] for ref in alive}
            self.store.mutate(
                kind,
                meta.get("namespace"),
                meta["name"],
                lambda o: o["metadata"].update(
                    ownerReferences=[
                        r for r in o["metadata"].get("ownerReferences") or [] if r["uid"] in keep
                    ]
                ),
            )

    def _orphan(self, owner_uid: str) -> None:
        for dependent in list(self._dependents.get(owner_uid, set())):
            child = self._lookup(dependent)
            if child is None:
                continue
            kind, obj = child

            def unlink(o: Obj) -> None:
                refs = [
                    r for r in o["metadata"].get("ownerReferences") or [] if r["uid"] != owner_uid
                ]
                if refs:
                    o["metadata"]["ownerReferences"] = refs
                else:
                    o["metadata"].pop("ownerReferences", None)

            self.store.mutate(
                kind, obj["metadata"].get("namespace"), obj["metadata"]["name"], unlink
            )

    def _drop_finalizer(self, kind: Kind, obj: Obj, finalizer: str) -> None:
        def drop(o: Obj) -> None:
            left = [f for f in o["metadata"].get("finalizers") or [] if f != finalizer]
            if left:
                o["metadata"]["finalizers"] = left
            else:
                o["metadata"].pop("finalizers", None)

        self.store.mutate(kind, obj["metadata"].get("namespace"), obj["metadata"]["name"], drop)

    def _delete(self, kind: Kind, obj: Obj, propagation: str) -> None:
        meta = obj["metadata"]
        self.store.delete(
            kind,
            meta.get("namespace"),
            meta["name"],
            propagation=propagation,
            preconditions={"uid": meta["uid"]},
        )
