"""The progress service's long-lived parts, started once NATS and PostgreSQL are up.

``running()`` is the service's ``ServiceSpec.domain``: it joins the replicas' membership,
starts the scrape loop, the pod watch (``HOIST_PROGRESS_WATCH_PODS``) and the fan-out of
progress events to SSE clients, and stops them in reverse order (leaving the membership
last but one, so the other replicas take over at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from services.progress.recording import Recorder
from services.progress.scheduling import Scheduler
from services.progress.scraping import Fetcher
from services.progress.sharding import Membership
from services.progress.streaming import Hub
from services.progress.targets import Target
from services.progress.watching import watch_clusters
from shared import catalog
from shared.clusters import Clusters
from shared.service.runtime import Runtime

log = logging.getLogger("hoist.progress")


@dataclass
class Progress:
    engine: AsyncEngine
    membership: Membership
    scheduler: Scheduler
    recorder: Recorder
    hub: Hub
    targets: dict[str, Target]


@contextlib.asynccontextmanager
async def running(runtime: Runtime) -> AsyncIterator[Progress]:
    settings = runtime.settings.progress
    clusters = Clusters(runtime.settings.kube)
    fetcher = Fetcher(settings, clusters)
    membership = Membership(runtime.bus, settings)
    targets: dict[str, Target] = {}
    by_vm: dict[str, set[str]] = {}
    recorder = Recorder(runtime.engine, runtime.bus, settings, targets, by_vm)
    scheduler = Scheduler(runtime.engine, settings, fetcher, recorder, membership, targets, by_vm)
    hub = Hub()
    subs = [
        await runtime.bus.subscribe_core(catalog.DISK_PROGRESS, hub.on_event),
        await runtime.bus.subscribe_core(catalog.VM_PROGRESS, hub.on_event),
    ]
    try:
        await membership.beat()  # know the others before scraping anything
    except Exception as exc:
        log.warning("replica bucket not reachable yet (%s); scraping alone meanwhile", exc)
    tasks = [
        asyncio.create_task(membership.run(), name="progress-membership"),
        asyncio.create_task(scheduler.run(), name="progress-scrape"),
    ]
    if settings.watch_pods:
        tasks.append(
            asyncio.create_task(watch_clusters(runtime.engine, clusters), name="pod-watches")
        )
    log.info(
        "progress replica %s: scraping every %.1f s (via %s)",
        membership.me,
        settings.scrape_seconds,
        settings.via,
    )
    try:
        yield Progress(runtime.engine, membership, scheduler, recorder, hub, targets)
    finally:
        for task in reversed(tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await membership.leave()
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await fetcher.close()
        await clusters.close()
