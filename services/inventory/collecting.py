"""Keeping every provider's inventory current: one collector task per provider.

Layers: the ``Collectors`` supervisor reconciles the set of running collectors with the
providers table (started, restarted when a provider's definition changes, stopped when it is
deleted); each ``Collector`` runs probe -> full load -> refresh every interval for its
provider and reports what happens as the provider's status.

Isolation: a collector's blocking SDK calls go through its own share of the thread pool
(``Blocking``), its errors stay in its task, and its waits are its own, so one slow or broken
provider never delays another.

Replicas: a collector runs only in the replica that holds its provider's PostgreSQL advisory
lock (on one connection the supervisor keeps), so two replicas never collect the same
provider; if that replica dies, its connection closes, the locks free, and another replica
takes the providers over at its next reconcile.

What happens on failure: a ``ConnectionProblem`` turns the provider ConnectionFailed with
its reason; temporary reasons retry with backoff (1 s doubling to
``HOIST_INVENTORY_RETRY_MAX_SECONDS``), permanent ones (credentials, a changed certificate)
retry at that maximum interval only, since they need a person. Any other error is logged and
retried the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import zlib
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from services.inventory import db, providers
from services.inventory.secrets import SecretStore
from services.inventory.sources import source_class
from services.inventory.sources.contract import (
    Blocking,
    ConnectionProblem,
    ProviderInfo,
    Source,
    SourceContext,
    host_port,
)
from services.inventory.storing import ProviderGone, Store
from shared.db.messaging import Outbox
from shared.payloads import ProviderPhase
from shared.settings import HoistSettings
from shared.tls import fetch_certificate

log = logging.getLogger("hoist.inventory.collecting")

RECONCILE_SECONDS = 2.0


def _lock_key(provider_id: str) -> int:
    # Signed 32-bit keys in their own class (the two-key form) so no other lock collides.
    return zlib.crc32(provider_id.encode()) - (1 << 31)


class Collectors:
    def __init__(
        self,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        store: Store,
        secrets: SecretStore,
        settings: HoistSettings,
    ) -> None:
        self.engine = engine
        self.sessionmaker = sessionmaker
        self.outbox = outbox
        self.store = store
        self.secrets = secrets
        self.settings = settings
        s = settings.inventory
        self.blocking = Blocking(
            s.workers, s.calls_per_provider, s.call_timeout_seconds, name="inventory-sdk"
        )
        self.running: dict[str, Collector] = {}
        self._kick = asyncio.Event()
        self._locks: AsyncConnection | None = None

    def kick(self) -> None:
        """Reconcile now (a provider was created, changed or deleted)."""
        self._kick.set()

    async def run(self) -> None:
        while True:
            try:
                await self._reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reconciling collectors: %s; retry in %.0f s", exc, RECONCILE_SECONDS)
                await self._drop_locks()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), RECONCILE_SECONDS)
            self._kick.clear()

    async def _reconcile(self) -> None:
        async with self.sessionmaker() as session:
            rows = (
                await session.execute(select(db.providers.c.id, db.providers.c.generation))
            ).all()
        wanted = {pid: gen for pid, gen in rows}
        for pid in list(self.running):
            collector = self.running[pid]
            if wanted.get(pid) != collector.generation or collector.finished:
                await self._stop(pid)
        if self._locks is None:
            self._locks = await self.engine.connect()
        for pid, gen in wanted.items():
            if pid in self.running:
                continue
            got = await self._locks.scalar(
                text("SELECT pg_try_advisory_lock(1213, :k)"), {"k": _lock_key(pid)}
            )
            await self._locks.commit()
            if not got:
                continue  # another replica collects it
            collector = Collector(self, pid, gen)
            self.running[pid] = collector
            collector.start()

    async def _stop(self, pid: str) -> None:
        collector = self.running.pop(pid)
        await collector.stop()
        self.blocking.forget(pid)
        if self._locks is not None:
            with contextlib.suppress(Exception):
                await self._locks.execute(
                    text("SELECT pg_advisory_unlock(1213, :k)"), {"k": _lock_key(pid)}
                )
                await self._locks.commit()

    async def _drop_locks(self) -> None:
        """The lock connection broke: our locks are gone, so our collectors must stop."""
        for pid in list(self.running):
            await self.running.pop(pid).stop()
        if self._locks is not None:
            with contextlib.suppress(Exception):
                await self._locks.close()
        self._locks = None

    async def close(self) -> None:
        await self._drop_locks()
        self.blocking.shutdown()


class Collector:
    """One provider's collection loop."""

    def __init__(self, owner: Collectors, provider_id: str, generation: int) -> None:
        self.owner = owner
        self.provider_id = provider_id
        self.generation = generation
        self.task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    @property
    def finished(self) -> bool:
        return self.task is not None and self.task.done()

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"collector-{self.provider_id}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    # --- the loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        settings = self.owner.settings.inventory
        delay = 1.0
        while True:
            source: Source | None = None
            try:
                row = await self._row()
                if row is None:
                    return  # deleted meanwhile
                info = providers.info_of(row)
                source = await self._connect(info, row)
                await self._load(source, info, announce=row["last_refresh"] is not None)
                delay = 1.0
                await self._follow(source, info)
            except asyncio.CancelledError:
                raise
            except ProviderGone:
                return  # deleted while collecting; the supervisor forgets this collector
            except ConnectionProblem as problem:
                delay = settings.retry_max_seconds if problem.permanent else delay
                await self._failed(problem.reason.value, problem.message, problem.permanent)
            except Exception as exc:
                log.exception("provider %s: collection failed", self.provider_id)
                await self._failed("CollectionFailed", f"{type(exc).__name__}: {exc}", False)
            finally:
                if source is not None:
                    with contextlib.suppress(Exception):
                        await source.close()
            await self._sleep(delay)
            delay = min(delay * 2, settings.retry_max_seconds)

    async def _row(self) -> Any:
        async with self.owner.sessionmaker() as session:
            p = db.providers
            return (
                (await session.execute(select(p).where(p.c.id == self.provider_id)))
                .mappings()
                .first()
            )

    def _context(self) -> SourceContext:
        return SourceContext(
            calls=self.owner.blocking.for_provider(self.provider_id),
            settings=self.owner.settings.inventory,
            kube=self.owner.settings.kube,
        )

    async def _connect(self, info: ProviderInfo, row: Any) -> Source:
        secret = await self.owner.secrets.get(self.provider_id)
        await self.owner.secrets.ensure_type(self.provider_id, info.type.value)
        source = source_class(info.type)(info, secret, self._context())
        facts = await source.probe()
        fields: dict[str, Any] = {"facts": _jsonable(facts)}
        certificate = await _certificate(info.url, self.owner.settings.inventory)
        if certificate is not None:
            fields["certificate"] = certificate
        first = row["last_refresh"] is None
        async with self.owner.sessionmaker() as session, session.begin():
            await providers.set_status(
                session,
                self.owner.outbox,
                self.provider_id,
                phase=ProviderPhase.STAGING if first else None,
                conditions=[
                    providers.condition("Connected", True, "Connected"),
                    *(providers.condition(*c) for c in source.conditions(facts)),
                ],
                **fields,
            )
        return source

    async def _load(self, source: Source, info: ProviderInfo, *, announce: bool) -> None:
        started = time.monotonic()
        batch = await source.load()
        applied = await self.owner.store.apply(
            info.id, info.type, batch, source.assess, announce=announce
        )
        log.info(
            "provider %s: full load of %d objects in %.1f s (%d created, %d updated, %d deleted)",
            info.name,
            len(batch.items),
            time.monotonic() - started,
            applied.created,
            applied.updated,
            applied.deleted,
        )
        async with self.owner.sessionmaker() as session, session.begin():
            await providers.set_status(
                session,
                self.owner.outbox,
                self.provider_id,
                phase=ProviderPhase.READY,
                conditions=[
                    providers.condition("Connected", True, "Connected"),
                    providers.condition("InventoryLoaded", True, "Loaded"),
                ],
                refreshed=True,
            )

    async def _follow(self, source: Source, info: ProviderInfo) -> None:
        settings = self.owner.settings.inventory
        interval = float(info.settings.get("refreshSeconds") or settings.refresh_seconds)
        next_full = time.monotonic() + settings.full_resync_minutes * 60
        while True:
            await self._sleep(interval)
            if time.monotonic() >= next_full:
                await self._load(source, info, announce=True)
                next_full = time.monotonic() + settings.full_resync_minutes * 60
                continue
            batch = await source.refresh()
            if not batch.empty:
                applied = await self.owner.store.apply(
                    info.id, info.type, batch, source.assess, announce=True
                )
                if applied.changed:
                    log.info(
                        "provider %s: %d created, %d updated, %d deleted",
                        info.name,
                        applied.created,
                        applied.updated,
                        applied.deleted,
                    )
            await self._touch()

    async def _touch(self) -> None:
        """Record a successful refresh without a new revision: it changed nothing visible."""
        async with self.owner.sessionmaker() as session, session.begin():
            p = db.providers
            await session.execute(
                update(p).where(p.c.id == self.provider_id).values(last_refresh=func.now())
            )

    async def _failed(self, reason: str, message: str, permanent: bool) -> None:
        level = logging.ERROR if permanent else logging.WARNING
        log.log(
            level,
            "provider %s: %s: %s (%s)",
            self.provider_id,
            reason,
            message,
            "needs a fix of the provider or the server; retrying slowly"
            if permanent
            else "temporary; retrying with backoff",
        )
        with contextlib.suppress(Exception):
            async with self.owner.sessionmaker() as session, session.begin():
                await providers.set_status(
                    session,
                    self.owner.outbox,
                    self.provider_id,
                    phase=ProviderPhase.CONNECTION_FAILED,
                    conditions=[providers.condition("Connected", False, reason, message)],
                )

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()


async def _certificate(url: str, settings: Any) -> dict[str, Any] | None:
    """The server's certificate as last seen (shown with its fingerprints); best effort."""
    if not url.startswith("https://"):
        return None
    host, port = host_port(url)
    try:
        cert = await fetch_certificate(host, port, settings.connect_timeout_seconds)
    except Exception:
        return None
    return cert.as_dict()


def _jsonable(value: Any) -> Any:
    """Facts as JSONB takes them (datetimes and the like as strings)."""
    return json.loads(json.dumps(value, default=str))
