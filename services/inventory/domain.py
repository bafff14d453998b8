"""The inventory service's long-lived parts, started once NATS and PostgreSQL are up.

``running()`` is the service's ``ServiceSpec.domain``: it opens the Kubernetes client of the
cluster Hoist runs in (for provider Secrets), sweeps Secrets a crash left without a provider,
and runs the collectors until the service stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.inventory import db, providers
from services.inventory.collecting import Collectors
from services.inventory.registering import Registry
from services.inventory.secrets import SecretStore
from services.inventory.storing import Store
from shared.kube import local_client
from shared.payloads import ProviderPhase, ProviderType
from shared.service.runtime import Runtime
from shared.settings import HoistSettings

log = logging.getLogger("hoist.inventory")


@dataclass
class Inventory:
    engine: AsyncEngine
    settings: HoistSettings
    registry: Registry
    collectors: Collectors

    async def provider(self, ref: str) -> Any:
        async with self.engine.connect() as conn:
            return await providers.find(conn, ref)

    async def list_providers(
        self, ptype: ProviderType | None, phase: ProviderPhase | None
    ) -> Sequence[Any]:
        p = db.providers
        q = select(p).order_by(p.c.name)
        if ptype is not None:
            q = q.where(p.c.type == ptype.value)
        if phase is not None:
            q = q.where(p.c.phase == phase.value)
        async with self.engine.connect() as conn:
            return (await conn.execute(q)).mappings().all()


@contextlib.asynccontextmanager
async def running(runtime: Runtime) -> AsyncIterator[Inventory]:
    settings = runtime.settings
    async with local_client(settings.kube) as api:
        secrets = SecretStore(api, settings.kube.namespace)
        store = Store(runtime.engine, runtime.outbox)
        collectors = Collectors(
            runtime.engine, runtime.sessionmaker, runtime.outbox, store, secrets, settings
        )
        registry = Registry(runtime, secrets, collectors)
        swept = await registry.sweep_orphans()
        if swept:
            log.info("removed %d provider Secrets left without a provider", swept)
        task = asyncio.create_task(collectors.run(), name="collectors")
        try:
            yield Inventory(runtime.engine, settings, registry, collectors)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await collectors.close()
