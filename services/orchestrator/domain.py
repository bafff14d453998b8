"""The orchestrator's long-lived parts, started once NATS and PostgreSQL are up.

``running()`` is the service's ``ServiceSpec.domain``: the clusters (the one Hoist runs in,
where provider Secrets live, and the targets), one connection per source provider, and the
runner that drives every VM's pipeline from PostgreSQL, nudged by the controller's
``population.ended`` notices so a disk's end is seen at once rather than at the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from services.orchestrator.context import SourcePool
from services.orchestrator.runner import Runner
from shared import catalog
from shared import envelope as env
from shared.clusters import Clusters
from shared.payloads import PopulationEnded
from shared.service.runtime import Runtime


@dataclass
class Orchestrator:
    runner: Runner
    clusters: Clusters
    sources: SourcePool


@contextlib.asynccontextmanager
async def running(runtime: Runtime) -> AsyncIterator[Orchestrator]:
    settings = runtime.settings.orchestrator
    clusters = Clusters(runtime.settings.kube)
    sources = SourcePool(clusters, settings)
    runner = Runner(
        runtime.engine, runtime.sessionmaker, runtime.outbox, clusters, sources, settings
    )

    async def ended(event: env.Envelope[Any]) -> None:
        if isinstance(event.data, PopulationEnded):
            await runner.nudge(event.data.migration_id, event.data.vm_id)

    # Before the runner starts: a failed subscribe is retried with the whole domain.
    subscription = await runtime.bus.subscribe_core(catalog.POPULATION_ENDED, ended)
    task = asyncio.create_task(runner.run(), name="pipeline-runner")
    try:
        yield Orchestrator(runner, clusters, sources)
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
        await runner.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sources.close()
        await clusters.close()
