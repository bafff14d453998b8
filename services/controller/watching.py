"""Watches that turn cluster changes into user claims to reconcile.

Three list-and-watch loops, all namespaces: claims (the user claims, and the prime claims
that point at their owner), populator pods (by label; each points at its owner claim), and
the two populator CR kinds (each wakes the claims whose ``dataSourceRef`` names it). They
only say *which* claim to look at: the reconciler reads everything fresh, so a missed or
reordered event costs a delay, never a wrong decision, and the periodic resync bounds that
delay. A watch that ends is resumed from its last resourceVersion; one the server no
longer can resume (410 Gone) or that failed is listed again from scratch.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from services.controller import kubeapi
from services.controller.kubeapi import Kube, Obj
from services.controller.queue import Key, WorkQueue
from shared import populator as contract
from shared.populator import SourceRef, source_of

log = logging.getLogger("hoist.controller.watch")

WATCH_SECONDS = 300
RETRY_FIRST = 1.0
RETRY_MAX = 30.0


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


Lister = Callable[..., Awaitable[Any]]


class Watcher:
    """One list-and-watch loop."""

    def __init__(
        self,
        name: str,
        lister: Lister,
        args: Iterable[Any],
        on_event: Callable[[str, Obj], None],
        on_list: Callable[[list[Obj]], None],
        *,
        item_kind: str = "",
        label_selector: str | None = None,
    ) -> None:
        self.name = name
        self.lister = lister
        self.args = tuple(args)
        self.on_event = on_event
        self.on_list = on_list
        self.item_kind = item_kind
        self.label_selector = label_selector
        self.synced = asyncio.Event()
        self.problem: str | None = "not listed yet"

    def _options(self) -> dict[str, Any]:
        return {"label_selector": self.label_selector} if self.label_selector else {}

    async def run(self) -> None:
        delay = RETRY_FIRST
        version: str | None = None
        while True:
            try:
                if version is None:
                    version = await self._list()
                version = await self._watch(version)
                delay = RETRY_FIRST
                self.problem = None
            except asyncio.CancelledError:
                raise
            except _Gone:
                log.info("%s watch: resourceVersion too old; listing again", self.name)
                version = None
            except Exception as exc:
                status = exc.status if isinstance(exc, ApiException) else None
                self.problem = f"{type(exc).__name__} {status or ''}".strip()
                log.warning(
                    "%s watch failed (%s); listing again in %.0f s",
                    self.name,
                    f"API status {status}" if status else repr(exc),
                    delay,
                )
                version = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    async def _list(self) -> str:
        listed = await kubeapi.call(self.lister, *self.args, **self._options())
        items = listed.get("items") or []
        if self.item_kind:
            for item in items:  # list items carry no kind; handlers may want it
                item.setdefault("kind", self.item_kind)
        self.on_list(items)
        self.synced.set()
        self.problem = None
        return str((listed.get("metadata") or {}).get("resourceVersion") or "")

    async def _watch(self, version: str) -> str:
        """Stream events from ``version``; returns the last version seen when the server
        ends the watch (its timeout), so the next one resumes there."""
        response = await self.lister(
            *self.args,
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            _preload_content=False,
            _request_timeout=WATCH_SECONDS + 30,
            **self._options(),
        )
        try:
            if response.status == 410:
                raise _Gone
            if not 200 <= response.status <= 299:
                raise ApiException(status=response.status, reason=response.reason)
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self.on_event(kind, obj)
        finally:
            response.release()
        return version


class _Gone(Exception):
    """The watch cannot resume from its resourceVersion (410): list again."""


def watchers(kube: Kube, index: Index) -> list[Watcher]:
    """The controller's three watches (claims, populator pods, populator CRs)."""
    core, custom = kube.core, kube.custom
    result = [
        Watcher(
            "claims",
            core.list_persistent_volume_claim_for_all_namespaces,
            (),
            index.on_claim,
            index.relist_claims,
        ),
        Watcher(
            "pods",
            core.list_pod_for_all_namespaces,
            (),
            index.on_owned,
            index.relist_owned,
            label_selector=contract.CONTROLLER_SELECTOR,
        ),
    ]
    for kind in contract.KINDS:
        result.append(
            Watcher(
                kind.plural,
                custom.list_cluster_custom_object,
                (contract.GROUP, contract.VERSION, kind.plural),
                index.on_source,
                index.relist_sources,
                item_kind=kind.name,
            )
        )
    return result
