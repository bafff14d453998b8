"""Watches that keep a target's inventory current between full loads.

One task per kind, started by ``load()`` from the resourceVersion of that kind's list. Each
event lands in ``Pending``, which ``refresh()`` hands over as a ``Batch`` and clears: the
collector's interval only decides how often changes are stored, not how fresh they are.

A watch that ends cleanly (the server's ``timeoutSeconds``) resumes from the last
resourceVersion seen (bookmarks included). A ``410 Gone`` (the version fell out of the
server's history), a broken connection or a refused request relists the kind and marks it
``complete`` in the next batch, so whatever the watch missed (deletions included) is
settled by comparison. A kind whose CRD is not installed (404) is empty and complete, and
is listed again every interval until it appears.

The streams are read with ``ApiClient.call_api(..., _preload_content=False)`` rather than
``kubernetes_asyncio.watch.Watch``: that helper opens an aiohttp session of its own per
instance that nothing closes, retries a 410 once from the same (still too old) version,
and builds model objects this module would only turn back into dicts.
"""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from services.inventory.model import Batch, Item
from services.inventory.sources.contract import ConnectionProblem
from services.inventory.sources.kubevirt.kinds import KindSpec, Obj, item_key
from services.inventory.sources.kubevirt.rest import TRANSLATED, list_all, problem

log = logging.getLogger(__name__)

#: Seconds the server keeps one watch request open (real servers cap it near 30 min).
WATCH_SECONDS = 300


class Gone(Exception):
    """The watch cannot continue from its resourceVersion (too old, or its CRD went away):
    relist."""


class Pending:
    """Changes seen since the last ``take()``, newest state per object."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Item] = {}
        self.deleted: dict[tuple[str, str], None] = {}
        self.complete: set[str] = set()

    def upsert(self, item: Item) -> None:
        self.items[item.key] = item
        self.deleted.pop(item.key, None)

    def remove(self, key: tuple[str, str]) -> None:
        self.items.pop(key, None)
        self.deleted[key] = None

    def relisted(self, kind: str, items: list[Item]) -> None:
        """A full list of ``kind`` replaces whatever was pending for it."""
        for key in [k for k in self.items if k[0] == kind]:
            del self.items[key]
        for key in [k for k in self.deleted if k[0] == kind]:
            del self.deleted[key]
        for item in items:
            self.items[item.key] = item
        self.complete.add(kind)

    def take(self) -> Batch:
        batch = Batch(
            items=list(self.items.values()),
            deleted=list(self.deleted),
            complete=frozenset(self.complete),
        )
        self.items, self.deleted, self.complete = {}, {}, set()
        return batch


def normalize_all(spec: KindSpec, objects: list[Obj]) -> list[Item]:
    """Items of a list; an object too malformed to normalize is skipped, with a warning."""
    items = []
    for obj in objects:
        try:
            items.append(spec.normalize(obj))
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("skipping a malformed %s object: %r", spec.kind, exc)
    return items


class KindWatcher:
    """Keeps one kind current in ``pending``; failures go to ``problems[kind]``."""

    def __init__(
        self,
        api: client.ApiClient,
        spec: KindSpec,
        pending: Pending,
        problems: dict[str, ConnectionProblem],
        *,
        connect_timeout: float,
        read_timeout: float,
        poll_seconds: float,
        max_backoff: float,
    ) -> None:
        self.api = api
        self.spec = spec
        self.pending = pending
        self.problems = problems
        self.list_timeout = aiohttp.ClientTimeout(
            sock_connect=connect_timeout, sock_read=read_timeout
        )
        self.watch_timeout = aiohttp.ClientTimeout(
            sock_connect=connect_timeout, sock_read=WATCH_SECONDS + 30
        )
        self.poll_seconds = poll_seconds
        self.max_backoff = max_backoff
        self.relists = 0

    async def run(self, resource_version: str | None) -> None:
        """Watch from ``resource_version`` (None: the kind is not served yet), forever."""
        version = resource_version
        missing = version is None
        backoff = 1.0
        while True:
            try:
                if version is None:
                    if not missing:
                        await asyncio.sleep(min(backoff, self.max_backoff))
                        backoff *= 2
                    version, missing = await self._relist(missing)
                    if version is None:
                        await asyncio.sleep(self.poll_seconds)
                        continue
                version = await self._watch(version)
                backoff = 1.0
            except Gone:
                log.info("the %s watch expired (410 Gone): relisting", self.spec.kind)
                version, backoff = None, 0.0
            except ValueError as exc:  # a line that is not JSON: the stream is broken
                log.warning("the %s watch sent garbage (%s); relisting", self.spec.kind, exc)
                version, backoff = None, max(backoff, 1.0)
            except TRANSLATED as exc:
                found = problem(exc, self.spec.path)
                log.warning("the %s watch failed: %s; relisting", self.spec.kind, found.message)
                if isinstance(exc, ApiException) or version is None:
                    self.problems[self.spec.kind] = found
                version, backoff = None, max(backoff, 1.0)

    async def _relist(self, was_missing: bool) -> tuple[str | None, bool]:
        """List the kind into ``pending`` as complete; (resourceVersion, missing)."""
        self.relists += 1
        try:
            objects, version = await list_all(self.api, self.spec.path, self.list_timeout)
        except ApiException as exc:
            if exc.status == 404 and self.spec.optional:
                self.problems.pop(self.spec.kind, None)
                if not was_missing:
                    self.pending.relisted(self.spec.kind, [])
                return None, True
            raise
        self.problems.pop(self.spec.kind, None)
        self.pending.relisted(self.spec.kind, normalize_all(self.spec, objects))
        return version, False

    async def _watch(self, version: str) -> str:
        """Stream events into ``pending`` until the server ends the watch; the version to
        resume from. Raises ``Gone`` for 410, ``ApiException`` for other refusals."""
        query = [
            ("watch", "true"),
            ("resourceVersion", version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(WATCH_SECONDS)),
        ]
        response = await self.api.call_api(
            self.spec.path,
            "GET",
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=self.watch_timeout,
        )
        try:
            if response.status != 200:
                body = await response.read()
                if response.status == 410 or (response.status == 404 and self.spec.optional):
                    raise Gone()  # too old, or the CRD went away: the relist tells which
                error = ApiException(status=response.status, reason=response.reason)
                error.body = body.decode(errors="replace")
                raise error
            self.problems.pop(self.spec.kind, None)
            async for line in response.content:
                if line.strip():
                    version = self._event(json.loads(line), version)
        finally:
            response.release()
        return version

    def _event(self, event: Obj, version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            error = ApiException(status=obj.get("code") or 500, reason=obj.get("reason"))
            error.body = json.dumps(obj)
            raise error
        version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        if kind == "DELETED":
            self.pending.remove(item_key(self.spec, obj))
        elif kind in ("ADDED", "MODIFIED"):
            try:
                self.pending.upsert(self.spec.normalize(obj))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("skipping a malformed %s event: %r", self.spec.kind, exc)
        return version
