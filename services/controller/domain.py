"""The populator controller as one object: registration, watches, workers, resync.

``Controller`` is what the process entrypoint runs and what tests start in-process::

    controller = Controller(api, settings.orchestrator, bus)
    await controller.start()     # registers the CRDs, lists, then watches and works
    ...
    await controller.stop()      # drains: in-flight reconciles finish, then it returns

Several controllers may run against one cluster one after the other (a restart) without
making anything twice: every name is derived, every step re-reads the cluster. Running two
at the same time is safe too (creates are create-or-get, patches carry resourceVersions),
but wasteful; a deployment runs one replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from services.controller import metrics, registering
from services.controller.events import Announcer
from services.controller.kubeevents import Recorder
from services.controller.queue import Key, ShutDown, WorkQueue
from services.controller.reconciling import Reconciler
from services.controller.watching import Index, watchers
from shared import logs
from shared.bus import Bus
from shared.kube import Kube, ListWatch
from shared.settings import OrchestratorSettings

log = logging.getLogger("hoist.controller")

CONFLICT_RETRY_SECONDS = 0.2
REQUEST_SECONDS = 30.0
"""The time limit of each API call (a watch has its own, ``ListWatch``'s)."""


class Controller:
    def __init__(
        self,
        api: client.ApiClient,
        settings: OrchestratorSettings,
        bus: Bus | None = None,
        *,
        register: bool = True,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.kube = Kube(api, timeout=REQUEST_SECONDS)
        self.queue = WorkQueue()
        self.index = Index(self.queue)
        self.recorder = Recorder(self.kube)
        self.announcer = Announcer(bus)
        self.reconciler = Reconciler(self.kube, settings, self.recorder, self.announcer)
        self.watchers: list[ListWatch] = watchers(self.kube, self.index)
        self.register = register
        self.registered = False
        self._tasks: list[asyncio.Task[None]] = []
        self._workers: list[asyncio.Task[None]] = []
        self._started = False
        self._crashed: str | None = None

    # --- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Register (raises if the API refuses: the caller retries), then run."""
        if self._started:
            return
        if self.register:
            await registering.register(self.kube)
        self.registered = True
        self._started = True
        for watcher in self.watchers:
            self._spawn(watcher.run(), f"watch-{watcher.name}")
        self._spawn(self._resync(), "resync")
        for n in range(self.settings.controller_workers):
            task = asyncio.create_task(self._work(), name=f"populator-worker-{n}")
            task.add_done_callback(self._on_exit)
            self._workers.append(task)
        log.info(
            "populator controller running: %d workers, resync every %.0f s",
            self.settings.controller_workers,
            self.settings.controller_resync_seconds,
        )

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=f"populator-{name}")
        task.add_done_callback(self._on_exit)
        self._tasks.append(task)

    def _on_exit(self, task: asyncio.Task[None]) -> None:
        """A watch, the resync or a worker that ends while running is a bug: /healthz
        reports it, so Kubernetes restarts the process."""
        if task.cancelled() or not self._started:
            return
        self._crashed = f"{task.get_name()} ended: {task.exception()!r}"
        log.error("populator controller task %s", self._crashed)

    async def wait_synced(self, timeout: float = 30.0) -> None:
        """Until every watch has listed once (tests: before creating objects is fine too)."""
        await asyncio.wait_for(asyncio.gather(*(w.synced.wait() for w in self.watchers)), timeout)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop watching, let in-flight reconciles finish (``grace`` seconds at most)."""
        if not self._started:
            return
        self._started = False
        self.queue.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._workers:
            _, pending = await asyncio.wait(self._workers, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
        self._tasks.clear()
        self._workers.clear()
        log.info("populator controller stopped")

    async def __aenter__(self) -> Controller:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- health --------------------------------------------------------------------------

    def waiting_for(self) -> list[str]:
        """What keeps the controller from being ready (empty: ready)."""
        waiting: list[str] = []
        if not self.registered:
            waiting.append("registration of the CRDs")
        for watcher in self.watchers:
            if not watcher.synced.is_set() or watcher.problem:
                waiting.append(f"watch {watcher.name}: {watcher.problem or 'listing'}")
        if self.bus is not None and not self.bus.connected:
            waiting.append("NATS")
        if self._crashed:
            waiting.append(self._crashed)
        return waiting

    @property
    def ready(self) -> bool:
        return self._started and not self.waiting_for()

    @property
    def healthy(self) -> bool:
        return self._crashed is None

    # --- work ----------------------------------------------------------------------------

    async def _resync(self) -> None:
        """Every claim is looked at again now and then: whatever a watch missed, or a wait
        on something no watch covers, is bounded by this."""
        while True:
            await asyncio.sleep(self.settings.controller_resync_seconds)
            for key in self.index.known():
                self.queue.add(key)
            metrics.CLAIMS.set(len(self.index.claims))

    async def _work(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            metrics.QUEUE.set(len(self.queue))
            try:
                delay = await self._reconcile(key)
            finally:
                self.queue.done(key)
            if delay is not None:
                self.queue.add_after(key, delay)

    async def _reconcile(self, key: Key) -> float | None:
        started = time.monotonic()
        with logs.bound(pvc=f"{key[0]}/{key[1]}"):
            try:
                delay = await self.reconciler.reconcile(key)
            except asyncio.CancelledError:
                raise
            except ApiException as exc:
                if exc.status == 409:
                    metrics.RECONCILES.labels("conflict").inc()
                    return CONFLICT_RETRY_SECONDS  # someone changed it: read it again
                delay = self.queue.failed(key)
                metrics.RECONCILES.labels("error").inc()
                log.warning(
                    "reconciling claim %s/%s: the API server answered %s (%s); "
                    "trying again in %.1f s",
                    *key,
                    exc.status,
                    exc.reason,
                    delay,
                )
                return delay
            except Exception:
                delay = self.queue.failed(key)
                metrics.RECONCILES.labels("error").inc()
                log.exception("reconciling claim %s/%s failed; trying again in %.1f s", *key, delay)
                return delay
            finally:
                metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
        self.queue.forget(key)
        metrics.RECONCILES.labels("ok").inc()
        return delay


async def run_until(stop: asyncio.Event, controller: Controller, retry_max: float = 30.0) -> bool:
    """Start ``controller``, retrying registration (the API server may not answer yet);
    False when ``stop`` was set first."""
    delay = 1.0
    while not stop.is_set():
        try:
            await controller.start()
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            status = exc.status if isinstance(exc, ApiException) else None
            log.warning(
                "registering the populator CRDs failed (%s); trying again in %.0f s",
                f"API status {status}" if status else repr(exc),
                delay,
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, retry_max)
    return False
