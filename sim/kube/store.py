"""The cluster's state: objects, resource versions, history and watchers (etcd's role).

Everything runs on one event loop and every method here is synchronous, so a read-modify-
write inside one call is atomic: controllers get the same guarantees an etcd transaction
gives, without locks. Stored objects are never mutated in place; each write stores a new
dict, which lets the API layer cache each object's JSON and send it to many watchers.

Semantics kept from the real API server: uid, creationTimestamp, generation (bumped when
anything but metadata and status changes), one cluster-wide increasing resourceVersion,
optimistic concurrency (409 on a stale resourceVersion), the status subresource,
finalizers and deletionTimestamp, label/field-filtered watches with the ADDED/DELETED
transitions a selector implies, and 410 Gone for a watch older than the kept history.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import random
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sim.kube import fieldmanager
from sim.kube.errors import ApiError, already_exists, bad_request, conflict, gone, not_found
from sim.kube.kinds import Kind, Registry
from sim.kube.selectors import Predicate

Obj = dict[str, Any]
#: Called before an object is stored: (kind, new, old or None) -> may default `new` or raise.
Admitter = Callable[[Kind, Obj, "Obj | None"], None]
#: Asked on delete: True when something else (the kubelet) finishes the deletion later.
DeletionGate = Callable[[Kind, Obj, "int | None"], bool]

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass
class Entry:
    """A stored object and its JSON, computed once and shared by lists and watches."""

    obj: Obj
    _raw: bytes | None = None

    @property
    def raw(self) -> bytes:
        if self._raw is None:
            self._raw = encode(self.obj)
        return self._raw


@dataclass(frozen=True)
class Change:
    """One write, as kept in the history and fanned out to watchers."""

    rv: int
    key: tuple[str, str]
    type: str
    entry: Entry
    old: Obj | None


@dataclass(frozen=True)
class ListResult:
    items: list[Entry]
    resource_version: int
    continue_token: str | None
    remaining: int | None


@dataclass(eq=False)
class Watcher:
    """One watch: a queue of (type, entry) the store fills; None ends it."""

    key: tuple[str, str]
    namespace: str | None
    predicate: Predicate | None
    bookmarks: bool
    queue: asyncio.Queue[tuple[str, Entry | int] | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=50_000)
    )
    closed: bool = False

    def matches(self, obj: Obj) -> bool:
        if self.namespace is not None and obj["metadata"].get("namespace") != self.namespace:
            return False
        return self.predicate is None or self.predicate(obj)

    def offer(self, change: Change) -> None:
        new = self.matches(change.entry.obj)
        if change.type == "MODIFIED" and change.old is not None:
            old = self.matches(change.old)
            if old and not new:
                self._put(("DELETED", change.entry))
            elif new and not old:
                self._put(("ADDED", change.entry))
            elif new:
                self._put(("MODIFIED", change.entry))
        elif new:
            self._put((change.type, change.entry))

    def _put(self, item: tuple[str, Entry | int] | None) -> None:
        if self.closed:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            # A real API server drops a watcher that cannot keep up; the client resumes
            # from the last resourceVersion it saw.
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)

    async def events(self) -> AsyncIterator[tuple[str, Entry | int]]:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            yield item


class Store:
    def __init__(self, registry: Registry, *, history: int = 100_000) -> None:
        self.registry = registry
        self._objects: dict[tuple[str, str], dict[tuple[str, str], Entry]] = {}
        self._rv = 1
        self._history: deque[Change] = deque(maxlen=history)
        self._watchers: dict[tuple[str, str], set[Watcher]] = {}
        self.admitters: list[Admitter] = []
        self.deletion_gates: list[DeletionGate] = []
        #: Called after every write (the garbage collector and controllers' indexes).
        self.listeners: list[Callable[[Kind, Change], None]] = []
        self._dry = False
        self.subresource: str | None = None

    # -- reading -------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def _bucket(self, kind: Kind) -> dict[tuple[str, str], Entry]:
        return self._objects.setdefault(kind.key, {})

    def find(self, kind: Kind, namespace: str | None, name: str) -> Entry | None:
        return self._bucket(kind).get((namespace or "", name))

    def entry(self, kind: Kind, namespace: str | None, name: str) -> Entry:
        found = self.find(kind, namespace, name)
        if found is None:
            raise not_found(kind.plural, kind.group, name)
        return found

    def get(self, kind: Kind, namespace: str | None, name: str) -> Obj:
        """A private copy: callers may change it and write it back."""
        return copy.deepcopy(self.entry(kind, namespace, name).obj)

    def scan(
        self, kind: Kind, namespace: str | None = None, predicate: Predicate | None = None
    ) -> Iterable[Entry]:
        """Matching entries, unordered and uncopied (read-only use)."""
        for (ns, _), found in list(self._bucket(kind).items()):
            if namespace is not None and ns != namespace:
                continue
            if predicate is None or predicate(found.obj):
                yield found

    def list(
        self,
        kind: Kind,
        namespace: str | None = None,
        predicate: Predicate | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ListResult:
        rv = self._rv
        start: tuple[str, str] | None = None
        if continue_token:
            try:
                state = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                start = (state["ns"], state["name"])
                rv = int(state["rv"])
            except (ValueError, KeyError, TypeError) as exc:
                raise bad_request(f"continue key is not valid: {exc}") from exc
        bucket = self._bucket(kind)
        keys = sorted(k for k in bucket if namespace is None or k[0] == namespace)
        items: list[Entry] = []
        token = None
        remaining = None
        for index, key in enumerate(keys):
            if start is not None and key <= start:
                continue
            found = bucket[key]
            if predicate is not None and not predicate(found.obj):
                continue
            if limit and len(items) >= limit:
                last = items[-1].obj["metadata"]
                token = base64.urlsafe_b64encode(
                    encode({"rv": rv, "ns": last.get("namespace", ""), "name": last["name"]})
                ).decode()
                remaining = len(keys) - index if predicate is None else None
                break
            items.append(found)
        return ListResult(items, rv, token, remaining)

    # -- writing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def dry_run(self) -> Iterator[None]:
        """Writes inside are checked and answered but neither stored nor seen (`?dryRun=All`)."""
        self._dry = True
        try:
            yield
        finally:
            self._dry = False

    def _commit(self, kind: Kind, change_type: str, obj: Obj, old: Obj | None) -> Entry:
        if self._dry:
            return Entry(obj)
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        entry = Entry(obj)
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        bucket = self._bucket(kind)
        if change_type == "DELETED":
            bucket.pop(key, None)
        else:
            bucket[key] = entry
        change = Change(self._rv, kind.key, change_type, entry, old)
        self._history.append(change)
        for watcher in list(self._watchers.get(kind.key, ())):
            watcher.offer(change)
        for listener in self.listeners:
            listener(kind, change)
        return entry

    def _admit(self, kind: Kind, obj: Obj, old: Obj | None) -> None:
        for admitter in self.admitters:
            admitter(kind, obj, old)

    def create(self, kind: Kind, obj: Obj, namespace: str | None = None) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        obj["apiVersion"] = kind.api_version
        obj["kind"] = kind.kind
        if kind.namespaced:
            ns = namespace or meta.get("namespace") or "default"
            if meta.get("namespace") and meta["namespace"] != ns:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            meta["namespace"] = ns
            self._check_namespace(ns)
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError(
                    422,
                    "Invalid",
                    f'{kind.kind} "" is invalid: metadata.name: Required '
                    "value: name or generateName is required",
                )
            meta["name"] = meta["generateName"] + "".join(random.choices(_NAME_CHARS, k=5))
        if self.find(kind, meta.get("namespace"), meta["name"]) is not None:
            raise already_exists(kind.plural, kind.group, meta["name"])
        for transient in (
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ):
            meta.pop(transient, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        meta["generation"] = 1
        if kind.status:
            obj.pop("status", None)
        self._admit(kind, obj, None)
        fieldmanager.track(kind, None, obj)
        return self._commit(kind, "ADDED", obj, None).obj

    def _check_namespace(self, namespace: str) -> None:
        ns_kind = self.registry.lookup("", "v1", "namespaces")
        assert ns_kind is not None
        found = self.find(ns_kind, None, namespace)
        if found is None:
            raise not_found("namespaces", "", namespace)
        if found.obj["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {namespace} "
                "because it is being terminated",
            )

    def update(
        self,
        kind: Kind,
        obj: Obj,
        *,
        subresource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
    ) -> Obj:
        """PUT: replace the object (or only its status), with optimistic concurrency."""
        meta = obj.get("metadata") or {}
        name = name or meta.get("name")
        if not name:
            raise bad_request("name is required")
        ns = (namespace or meta.get("namespace") or "default") if kind.namespaced else None
        current = self.entry(kind, ns, name).obj
        wanted_rv = meta.get("resourceVersion")
        if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
            raise conflict(
                kind.plural,
                kind.group,
                name,
                "the object has been modified; please "
                "apply your changes to the latest version and try again",
            )
        if meta.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the "
                f"name on the URL ({name})"
            )
        if subresource == "status":
            new = copy.deepcopy(current)
            if "status" in obj:
                new["status"] = copy.deepcopy(obj["status"])
            else:
                new.pop("status", None)
        else:
            new = copy.deepcopy(obj)
            new["apiVersion"], new["kind"] = kind.api_version, kind.kind
            new_meta = new.setdefault("metadata", {})
            for fixed in (
                "uid",
                "creationTimestamp",
                "namespace",
                "name",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ):
                if fixed in current["metadata"]:
                    new_meta[fixed] = current["metadata"][fixed]
                else:
                    new_meta.pop(fixed, None)
            if kind.status:
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
                else:
                    new.pop("status", None)
        fieldmanager.track(kind, current, new)
        return self._replace(kind, current, new)

    def _replace(self, kind: Kind, current: Obj, new: Obj, subresource: str | None = None) -> Obj:
        meta, old_meta = new["metadata"], current["metadata"]
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise ApiError(
                    422,
                    "Invalid",
                    f'{kind.kind} "{meta["name"]}" is invalid: '
                    f"metadata.finalizers: Forbidden: no new finalizers can be added if the "
                    f"object is being deleted, found new finalizers {sorted(added)}",
                )
        #: Admission may allow more through a subresource (`pods/binding` sets spec.nodeName).
        self.subresource = subresource
        try:
            self._admit(kind, new, current)
        finally:
            self.subresource = None
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if new == current:
            # The real server does not write (nor bump the resourceVersion) for a no-op.
            return current
        if _spec_of(new) != _spec_of(current):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        if (
            old_meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and not any(gate(kind, new, None) for gate in self.deletion_gates)
        ):
            return self._commit(kind, "DELETED", new, current).obj
        return self._commit(kind, "MODIFIED", new, current).obj

    def mutate(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        change: Callable[[Obj], None],
        *,
        subresource: str | None = None,
    ) -> Obj:
        """Read, change and write in one step (what a controller's retry loop converges to)."""
        current = self.entry(kind, namespace, name).obj
        new = copy.deepcopy(current)
        change(new)
        if subresource == "status":
            status_only = copy.deepcopy(current)
            if "status" in new:
                status_only["status"] = new["status"]
            new = status_only
        elif kind.status and subresource is None:
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            else:
                new.pop("status", None)
        return self._replace(kind, current, new, subresource)

    def delete(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        *,
        propagation: str | None = None,
        preconditions: dict[str, Any] | None = None,
        grace_period: int | None = None,
    ) -> Obj:
        current = self.entry(kind, namespace, name).obj
        meta = current["metadata"]
        for field_name, key in (("uid", "uid"), ("resourceVersion", "resourceVersion")):
            wanted = (preconditions or {}).get(field_name)
            if wanted and wanted != meta.get(key):
                raise conflict(
                    kind.plural,
                    kind.group,
                    name,
                    f"Precondition failed: {field_name} in precondition: {wanted}, "
                    f"{field_name} in object meta: {meta.get(key)}",
                )
        finalizers = list(meta.get("finalizers") or [])
        if propagation == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        if propagation == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        deferred = any(gate(kind, current, grace_period) for gate in self.deletion_gates)
        if finalizers or deferred:
            # Deleting what is already being deleted changes nothing (and writes nothing:
            # the garbage collector would otherwise see its own write and delete again).
            if meta.get("deletionTimestamp") and finalizers == list(meta.get("finalizers") or []):
                return current
            new = copy.deepcopy(current)
            new["metadata"]["finalizers"] = finalizers
            new["metadata"].setdefault("deletionTimestamp", now())
            new["metadata"].setdefault(
                "deletionGracePeriodSeconds", grace_period if grace_period is not None else 0
            )
            if not finalizers:
                del new["metadata"]["finalizers"]
            return self._commit(kind, "MODIFIED", new, current).obj
        return self._commit(kind, "DELETED", copy.deepcopy(current), current).obj

    # -- watching ------------------------------------------------------------------------

    def watch(
        self,
        kind: Kind,
        namespace: str | None = None,
        predicate: Predicate | None = None,
        resource_version: str | None = None,
        *,
        bookmarks: bool = False,
        send_initial: bool = False,
    ) -> Watcher:
        """Start a watch; events after `resource_version`, or the current state first."""
        watcher = Watcher(kind.key, namespace, predicate, bookmarks)
        if resource_version in (None, "", "0") or send_initial:
            for found in sorted(
                self.scan(kind, namespace, predicate),
                key=lambda e: int(e.obj["metadata"]["resourceVersion"]),
            ):
                watcher.queue.put_nowait(("ADDED", found))
            if send_initial:
                # The watch-list protocol: a bookmark marks the end of the initial state.
                watcher.queue.put_nowait(("INITIAL_END", self._rv))
        else:
            try:
                since = int(resource_version)
            except ValueError as exc:
                raise bad_request(f"invalid resource version: {resource_version}") from exc
            oldest = self._history[0].rv if self._history else self._rv + 1
            if since < oldest - 1 and since < self._rv:
                raise gone(f"too old resource version: {since} ({oldest - 1})")
            for change in self._history:
                if change.rv > since and change.key == kind.key:
                    watcher.offer(change)
        self._watchers.setdefault(kind.key, set()).add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.get(watcher.key, set()).discard(watcher)
        watcher.close()

    def bookmark(self) -> None:
        """Tell every watcher that asked for bookmarks how far it is up to date."""
        for watchers in self._watchers.values():
            for watcher in list(watchers):
                if watcher.bookmarks:
                    watcher._put(("BOOKMARK", self._rv))

    def drop_watches(self, key: tuple[str, str] | None = None) -> int:
        """Close watches (all, or one kind's): a fault the clients must survive."""
        dropped = 0
        for watch_key, watchers in list(self._watchers.items()):
            if key is None or watch_key == key:
                for watcher in list(watchers):
                    self.unwatch(watcher)
                    dropped += 1
        return dropped

    def forget_kind(self, kind: Kind) -> None:
        """A CRD went away: its objects and watches go with it."""
        self.drop_watches(kind.key)
        self._objects.pop(kind.key, None)


def _spec_of(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}
