"""The control loops that make a simulated cluster do things on its own.

Each controller is one long-running task over the store: it watches the kinds it cares
about and converges the world towards their spec, exactly as its real counterpart does
through the API (and with the same events a user would see in `kubectl describe`). Every
controller can be switched off for a test, which is how a test reproduces "nothing
happens" situations such as a WaitForFirstConsumer claim without a consumer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from sim.kube.store import Obj, Watcher

if TYPE_CHECKING:
    from sim.kube.cluster import Cluster

log = logging.getLogger(__name__)


class WatchClosed(ConnectionError):
    """The store closed a controller's watch (a fault, or a watcher that fell behind)."""


class Controller:
    """Base class: `run()` is the loop; `stop()` cancels it; errors are logged and retried."""

    #: The name used to switch the controller off (`ClusterConfig.disabled`).
    name = "controller"

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.store = cluster.store
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=f"sim-kube-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.shutdown()

    async def _supervise(self) -> None:
        # A controller that crashes restarts after a second, like a pod with restartPolicy
        # Always: the simulator must keep running even when one loop has a bug.
        while True:
            try:
                await self.run()
                return
            except asyncio.CancelledError:
                raise
            except WatchClosed:
                # Like an informer: start over with a fresh list-and-watch, at once.
                log.info("controller %s lost its watch; resyncing", self.name)
                continue
            except Exception:
                log.exception("controller %s failed; restarting in 1 s", self.name)
                await asyncio.sleep(1)

    async def run(self) -> None:
        raise NotImplementedError

    async def shutdown(self) -> None:
        """Release what the controller holds (processes, mounts); called once on stop."""

    @staticmethod
    async def events(watcher: Watcher) -> list[tuple[str, Obj]]:
        """The next batch of events of a watch: waits for one, then takes what is queued."""
        first = await watcher.queue.get()
        batch = [first]
        while not watcher.queue.empty():
            batch.append(watcher.queue.get_nowait())
        result: list[tuple[str, Obj]] = []
        for item in batch:
            if item is None:
                raise WatchClosed("watch closed")
            event_type, entry = item
            if event_type != "BOOKMARK" and not isinstance(entry, int):
                result.append((event_type, entry.obj))
        return result
