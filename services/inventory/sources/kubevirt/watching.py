"""Watches that keep a target's inventory current between full loads.

One task per kind, started by ``load()`` from the resourceVersion of that kind's list. Each
event lands in ``Pending``, which ``refresh()`` hands over as a ``Batch`` and clears: the
collector's interval only decides how often changes are stored, not how fresh they are.

The loop is ``shared.kube.ListWatch``: a watch that ends cleanly (the server's
``timeoutSeconds``) resumes from the last resourceVersion seen (bookmarks included). A
``410 Gone`` (the version fell out of the server's history), a broken connection or a
refused request relists the kind and marks it ``complete`` in the next batch, so whatever
the watch missed (deletions included) is settled by comparison. A kind whose CRD is not
installed (404) is empty and complete, and is listed again every interval until it appears.
"""

from __future__ import annotations

import logging

import aiohttp

from services.inventory.items import Batch, Item
from services.inventory.sources.contract import ConnectionProblem
from services.inventory.sources.kubevirt.kinds import KindSpec, Obj, item_key
from services.inventory.sources.kubevirt.problems import problem
from shared.kube import Kube, ListWatch

log = logging.getLogger(__name__)

#: Seconds the server keeps one watch request open (real servers cap it near 30 min).
WATCH_SECONDS = 300
#: Objects per page of a list.
PAGE = 500


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
    """Keeps one kind current in ``pending``; failures go to ``problems[kind]``.

    The loop is ``shared.kube.ListWatch``'s; what is the inventory's: a list replaces the
    kind in ``pending`` and marks it complete, events upsert or remove normalized items, and
    a kind that cannot be read (a list that failed, a watch the server refused) has its
    ``ConnectionProblem`` in ``problems`` until it can again, which ``refresh()`` raises.
    """

    def __init__(
        self,
        kube: Kube,
        spec: KindSpec,
        pending: Pending,
        problems: dict[str, ConnectionProblem],
        *,
        connect_timeout: float,
        read_timeout: float,
        poll_seconds: float,
        max_backoff: float,
    ) -> None:
        self.spec = spec
        self.pending = pending
        self.problems = problems
        self.watch = ListWatch(
            kube,
            spec.resource,
            name=spec.kind,
            on_list=self._listed,
            on_event=self._event,
            on_problem=self._problem,
            optional=spec.optional,
            poll_seconds=poll_seconds,
            watch_seconds=WATCH_SECONDS,
            backoff=(1.0, max_backoff),
            page=PAGE,
            list_timeout=aiohttp.ClientTimeout(
                sock_connect=connect_timeout, sock_read=read_timeout
            ),
            watch_timeout=aiohttp.ClientTimeout(
                sock_connect=connect_timeout, sock_read=WATCH_SECONDS + 30
            ),
            log=log,
        )

    @property
    def relists(self) -> int:
        return self.watch.relists

    async def run(self, resource_version: str | None) -> None:
        """Watch from ``resource_version`` (None: the kind is not served yet), forever."""
        await self.watch.run(resource_version, missing=resource_version is None)

    def _listed(self, objects: list[Obj]) -> None:
        self.pending.relisted(self.spec.kind, normalize_all(self.spec, objects))

    def _event(self, kind: str, obj: Obj) -> None:
        if kind == "DELETED":
            self.pending.remove(item_key(self.spec, obj))
            return
        try:
            self.pending.upsert(self.spec.normalize(obj))
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("skipping a malformed %s event: %r", self.spec.kind, exc)

    def _problem(self, exc: BaseException | None) -> None:
        if exc is None:
            self.problems.pop(self.spec.kind, None)
            return
        self.problems[self.spec.kind] = problem(exc, self.spec.path)
