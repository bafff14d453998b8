"""A work queue under a controller, the way client-go's controllers are built.

Writes to the store are seen synchronously through `Store.listeners` and turned into work
items (kind tag, namespace, name); each item is reconciled by its own task, never twice at
once, and is retried after the delay `reconcile()` asks for, or with exponential backoff
when it raises. Level-triggered: an item says "look at this object again", never what
changed, so a missed or merged change cannot leave the world unconverged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sim.kube.controllers import Controller
from sim.kube.errors import ApiError
from sim.kube.kinds import Kind
from sim.kube.store import Change

if TYPE_CHECKING:
    from sim.kube.cluster import Cluster

log = logging.getLogger(__name__)

#: (what, namespace, name): `what` is a short tag the controller chooses ("pvc", "pv"...).
Item = tuple[str, str, str]

#: First retry delay after an error and the longest one (seconds).
BACKOFF_BASE = 0.25
BACKOFF_MAX = 10.0


class QueueController(Controller):
    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self._dirty: dict[Item, None] = {}
        self._due: dict[Item, float] = {}
        self._failures: dict[Item, int] = {}
        self._running: set[Item] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    # -- what subclasses define ----------------------------------------------------------

    def interest(self, kind: Kind, change: Change) -> Iterable[Item]:
        """The items a write concerns (called synchronously inside the store's commit)."""
        return ()

    def initial(self) -> Iterable[Item]:
        """Items to look at when the controller starts (the initial list of an informer)."""
        return ()

    async def reconcile(self, item: Item) -> float | None:
        """Converge one item; return seconds after which to look again, or None."""
        raise NotImplementedError

    # -- the queue -----------------------------------------------------------------------

    def enqueue(self, item: Item, delay: float = 0.0) -> None:
        if delay <= 0:
            self._dirty[item] = None
        else:
            due = asyncio.get_running_loop().time() + delay
            self._due[item] = min(due, self._due.get(item, due))
        self._wake.set()

    def backoff(self, item: Item) -> float:
        """The next delay for an item that keeps failing (grows until it succeeds)."""
        failures = self._failures.get(item, 0)
        self._failures[item] = failures + 1
        return float(min(BACKOFF_BASE * 2**failures, BACKOFF_MAX))

    def _listen(self, kind: Kind, change: Change) -> None:
        for item in self.interest(kind, change):
            self._dirty[item] = None
            self._wake.set()

    async def run(self) -> None:
        self.store.listeners.append(self._listen)
        loop = asyncio.get_running_loop()
        try:
            for item in self.initial():
                self._dirty[item] = None
            while True:
                if all(item in self._running for item in self._dirty):
                    timeout = None
                    if self._due:
                        timeout = max(0.0, min(self._due.values()) - loop.time())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout)
                self._wake.clear()
                now = loop.time()
                for item, due in list(self._due.items()):
                    if due <= now:
                        del self._due[item]
                        self._dirty[item] = None
                for item in list(self._dirty):
                    if item in self._running:
                        continue  # picked up again when the running one finishes
                    del self._dirty[item]
                    self._due.pop(item, None)
                    self._running.add(item)
                    task = asyncio.create_task(self._one(item), name=f"{self.name}:{item}")
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        finally:
            if self._listen in self.store.listeners:
                self.store.listeners.remove(self._listen)
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _one(self, item: Item) -> None:
        try:
            delay = await self.reconcile(item)
            if delay is None:
                self._failures.pop(item, None)
            else:
                self.enqueue(item, delay)
        except asyncio.CancelledError:
            raise
        except ApiError as exc:
            # Conflicts and vanished objects are normal races: look again soon.
            log.debug("%s: %s: %s", self.name, item, exc)
            self.enqueue(item, self.backoff(item))
        except Exception:
            log.exception("%s: reconciling %s failed", self.name, item)
            self.enqueue(item, self.backoff(item))
        finally:
            self._running.discard(item)
            if item in self._dirty:
                self._wake.set()
