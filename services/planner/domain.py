"""The planner service's long-lived parts, started once NATS and PostgreSQL are up.

``running()`` is the service's ``ServiceSpec.domain``: the inventory client every
validation uses, the revalidation loop that validates plans again when the inventory says
their providers changed, and the follower that writes disk and VM progress (core NATS) into
the status tables in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.planner.following import ProgressFollower
from services.planner.inventoryclient import InventoryClient
from services.planner.plans import Revalidator
from shared.db.messaging import Outbox
from shared.service.runtime import Runtime
from shared.settings import PlannerSettings

log = logging.getLogger("hoist.planner")


@dataclass
class Planner:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    outbox: Outbox
    inventory: InventoryClient
    settings: PlannerSettings


@contextlib.asynccontextmanager
async def running(runtime: Runtime) -> AsyncIterator[Planner]:
    settings = runtime.settings.planner
    inventory = InventoryClient(runtime.settings)
    revalidator = Revalidator(runtime.engine, inventory, settings)
    follower = ProgressFollower(runtime.bus, runtime.engine, settings.progress_flush_seconds)
    await follower.start()
    tasks = [asyncio.create_task(revalidator.run(), name="revalidator")]
    try:
        yield Planner(runtime.engine, runtime.sessionmaker, runtime.outbox, inventory, settings)
    finally:
        await follower.stop()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await inventory.close()
