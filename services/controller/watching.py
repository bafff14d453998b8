"""Watches that turn cluster changes into user claims to reconcile.

Three list-and-watch loops, all namespaces: claims (the user claims, and the prime claims
that point at their owner), populator pods (by label; each points at its owner claim), and
the two populator CR kinds (each wakes the claims whose ``dataSourceRef`` names it). They
only say *which* claim to look at: the reconciler reads everything fresh, so a missed or
reordered event costs a delay, never a wrong decision, and the periodic resync bounds that
delay. The loops are ``shared.kube.ListWatch``: a watch that ends is resumed from its last
resourceVersion; one the server no longer can resume (410 Gone) or that failed is listed
again from scratch, and a list hands over the whole state (``Index.relist_claims`` queues
the claims that vanished meanwhile, so the reconciler sees them gone).

Next: services/controller/reconciling.py
"""

from __future__ import annotations

import logging

from services.controller.queue import Key, WorkQueue
from shared import populator as contract
from shared.kube import POD, POPULATORS, PVC, Kube, ListWatch, Obj
from shared.populator import SourceRef, source_of

log = logging.getLogger("hoist.controller.watch")


def owner_claim(obj: Obj) -> Key | None:
    """The user claim that owns a prime claim or a populator pod (its controller ref)."""
    meta = obj.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "PersistentVolumeClaim" and ref.get("controller"):
            return (meta.get("namespace", ""), ref.get("name", ""))
    return None


class Index:
    """The user claims known from the claim watch, and which claims each CR feeds."""

    def __init__(self, queue: WorkQueue) -> None:
        self.queue = queue
        self.claims: dict[Key, SourceRef] = {}
        self._by_source: dict[SourceRef, set[Key]] = {}

    def known(self) -> list[Key]:
        return list(self.claims)

    def _track(self, key: Key, source: SourceRef | None) -> None:
        old = self.claims.pop(key, None)
        if old is not None:
            self._by_source.get(old, set()).discard(key)
            if not self._by_source.get(old):
                self._by_source.pop(old, None)
        if source is not None:
            self.claims[key] = source
            self._by_source.setdefault(source, set()).add(key)

    # --- event handlers (synchronous: they only enqueue) ---------------------------------

    def on_claim(self, kind: str, claim: Obj) -> None:
        meta = claim.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        source = source_of(claim)
        if source is not None or key in self.claims:
            self._track(key, None if kind == "DELETED" else source)
            self.queue.add(key)
            return
        if meta.get("name", "").startswith(contract.PRIME_PREFIX) and (owner := owner_claim(claim)):
            self.queue.add(owner)

    def relist_claims(self, claims: list[Obj]) -> None:
        seen: set[Key] = set()
        for claim in claims:
            meta = claim.get("metadata") or {}
            key = (meta.get("namespace", ""), meta.get("name", ""))
            if source_of(claim) is not None:
                seen.add(key)
            self.on_claim("ADDED", claim)
        for gone in set(self.claims) - seen:
            self._track(gone, None)
            self.queue.add(gone)  # deleted while nobody watched: let the reconciler see it

    def on_owned(self, kind: str, obj: Obj) -> None:
        if owner := owner_claim(obj):
            self.queue.add(owner)

    def relist_owned(self, objs: list[Obj]) -> None:
        for obj in objs:
            self.on_owned("ADDED", obj)

    def on_source(self, kind: str, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        populator_kind = contract.kind_named(obj.get("kind", ""))
        if populator_kind is None:
            return  # no claim names a kind that is not Hoist's
        source = SourceRef(populator_kind, meta.get("namespace", ""), meta.get("name", ""))
        for key in self._by_source.get(source, ()):
            self.queue.add(key)

    def relist_sources(self, objs: list[Obj]) -> None:
        for obj in objs:
            self.on_source("ADDED", obj)


def watchers(kube: Kube, index: Index) -> list[ListWatch]:
    """The controller's watches: claims, populator pods (by label), and each populator CR
    kind (its list items get their ``kind``: ``Index.on_source`` reads it). The loop is
    ``ListWatch``'s, with its defaults: watches of 300 s resumed from the last version,
    a 410 relisted at once, other failures relisted after a backoff of 1 s doubling to
    30 s; ``synced`` and ``problem`` are what ``Controller.waiting_for`` reports."""
    result = [
        ListWatch(
            kube,
            PVC,
            name="claims",
            on_list=index.relist_claims,
            on_event=index.on_claim,
            log=log,
        ),
        ListWatch(
            kube,
            POD,
            name="pods",
            selector=contract.CONTROLLER_SELECTOR,
            on_list=index.relist_owned,
            on_event=index.on_owned,
            log=log,
        ),
    ]
    for kind in contract.KINDS:
        result.append(
            ListWatch(
                kube,
                POPULATORS[kind.name],
                name=kind.plural,
                item_kind=kind.name,
                on_list=index.relist_sources,
                on_event=index.on_source,
                log=log,
            )
        )
    return result
