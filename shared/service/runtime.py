"""A running service's connections and background work, started and stopped in order.

Start-up never gives up: a pod whose NATS or PostgreSQL is not up yet keeps serving
``/healthz`` (alive) while ``/readyz`` says what it is waiting for, and it retries each step
with backoff. Shutdown goes the other way round: stop taking messages, let in-flight
handlers finish (or nak them), publish what the outbox holds, drain NATS, close the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.bus import Bus, Consumer
from shared.db import engine as dbengine
from shared.db import migrating
from shared.db.messaging import Outbox
from shared.service.spec import ServiceSpec
from shared.settings import HoistSettings

log = logging.getLogger("hoist.runtime")


class Runtime:
    def __init__(self, spec: ServiceSpec, settings: HoistSettings) -> None:
        self.spec = spec
        self.settings = settings
        self.bus = Bus(settings.nats, source=f"/hoist/{spec.name}")
        self.engine: AsyncEngine = dbengine.create_engine(
            settings.database, schema=spec.schema, application=f"hoist-{spec.name}"
        )
        self.sessionmaker: async_sessionmaker[AsyncSession] = dbengine.create_sessionmaker(
            self.engine
        )
        self.inbox: Table = spec.metadata.tables[f"{spec.schema}.inbox"]
        self.outbox = Outbox(
            self.engine,
            spec.metadata.tables[f"{spec.schema}.outbox"],
            self.bus,
            settings.outbox,
            inbox=self.inbox,
        )
        self.consumers: list[Consumer] = []
        self.domain: Any = None
        self._domain_stack = contextlib.AsyncExitStack()
        self.started = asyncio.Event()
        self.phase = "starting"
        self._tasks: list[asyncio.Task[None]] = []

    # --- start ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bring everything up; each step retries until it succeeds."""
        await self._until_done("connect to NATS", self.bus.connect)
        if self.settings.database.migrate_on_start:
            await self._until_done("migrate the database", self.migrate)
        await self._until_done("declare JetStream streams", self.bus.ensure_streams)
        self.consumers = [
            Consumer(self.bus, sub, self.settings.consumer) for sub in self.spec.subscriptions(self)
        ]
        for consumer in self.consumers:
            await self._until_done(f"declare consumer {consumer.durable}", consumer.declare)
            consumer.start()
        self._tasks.append(asyncio.create_task(self.outbox.run(), name="outbox-relay"))
        if self.spec.domain is not None:
            await self._until_done("start the service's domain", self._enter_domain)
        self.phase = "running"
        self.started.set()
        log.info(
            "service started",
            extra={"subscriptions": [c.durable for c in self.consumers]},
        )

    async def _enter_domain(self) -> None:
        assert self.spec.domain is not None
        self.domain = await self._domain_stack.enter_async_context(self.spec.domain(self))

    async def migrate(self) -> None:
        await migrating.upgrade(self.engine, self.spec.migrations, self.spec.schema)

    async def _until_done(self, what: str, step: Callable[[], Awaitable[Any]]) -> None:
        delay = 0.5
        self.phase = f"starting: {what}"
        while True:
            try:
                await step()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.phase = f"waiting: {what}: {exc}"
                log.warning("could not %s (%s); temporary, retry in %.1f s", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)

    # --- health --------------------------------------------------------------------------

    async def checks(self, timeout: float = 2.0) -> dict[str, str]:
        """Each dependency checked for real, now: ``ok`` or the reason it is not."""

        async def nats() -> None:
            await self.bus.ping(timeout)

        async def database() -> None:
            await asyncio.wait_for(dbengine.ping(self.engine), timeout)

        results: dict[str, str] = {}
        for name, probe in (("nats", nats), ("database", database)):
            try:
                await probe()
                results[name] = "ok"
            except Exception as exc:
                results[name] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        results["startup"] = "ok" if self.started.is_set() else self.phase
        return results

    # --- stop ----------------------------------------------------------------------------

    async def stop(self) -> None:
        self.phase = "stopping"
        grace = self.settings.http.shutdown_grace_seconds
        try:
            await asyncio.wait_for(self._domain_stack.aclose(), grace)
        except Exception as exc:
            log.warning("stopping the service's domain: %s", exc)
        self.domain = None
        await asyncio.gather(*(c.stop(grace) for c in self.consumers), return_exceptions=True)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.bus.connected:
            # Whatever handlers committed in their last moments still leaves now.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.outbox.publish_pending(), 5)
        await self.bus.drain()
        await self.engine.dispose()
        log.info("service stopped: consumers stopped, NATS drained, pool closed")
