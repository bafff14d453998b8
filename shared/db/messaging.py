"""The transactional inbox and outbox every service keeps in its own schema.

Why both:

- **Outbox**: a service changes its state and announces the change in one PostgreSQL
  transaction (the event row is written beside the state). A relay publishes rows to
  JetStream afterwards, with the event id as ``Nats-Msg-Id``. A crash between the commit and
  the publish loses nothing (the row is still there) and a crash after the publish but before
  marking it sends nothing twice (JetStream drops the duplicate id).
- **Inbox**: a handler records the id of the event it handled in the same transaction as its
  effects. A redelivered event (the ack was lost in a crash) finds its id and is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import zlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import nats.errors
from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared import envelope as env
from shared.bus import Bus, BusUnavailable
from shared.catalog import Delivery, EventSpec
from shared.settings import OutboxSettings

log = logging.getLogger("hoist.outbox")


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("consumer", String(200), primary_key=True),
        Column("event_id", String(256), primary_key=True),
        Column("event_type", String(200), nullable=False),
        Column("handled_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("seq", BigInteger, Identity(always=True), primary_key=True),
        Column("event_id", String(256), nullable=False, unique=True),
        Column("subject", Text, nullable=False),
        Column("event_type", String(200), nullable=False),
        Column("delivery", String(16), nullable=False),
        Column("envelope", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True), index=True),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("last_error", Text),
    )


async def claim(
    session: AsyncSession, inbox: Table, consumer: str, event: env.Envelope[Any]
) -> bool:
    """Record that ``consumer`` handles ``event`` in this transaction; False if it already
    did (then the caller skips the effects and lets the message be acknowledged)."""
    stmt = (
        pg_insert(inbox)
        .values(consumer=consumer, event_id=event.id, event_type=event.type)
        .on_conflict_do_nothing()
        .returning(inbox.c.event_id)
    )
    return (await session.execute(stmt)).first() is not None


class Outbox:
    """Writes events in the caller's transaction and publishes them after commit."""

    def __init__(
        self,
        engine: AsyncEngine,
        table: Table,
        bus: Bus,
        settings: OutboxSettings,
        inbox: Table | None = None,
        inbox_retention: timedelta = timedelta(days=30),
    ) -> None:
        self.engine = engine
        self.table = table
        self.bus = bus
        self.settings = settings
        self.inbox = inbox
        self.inbox_retention = inbox_retention
        self._wake = asyncio.Event()
        self._lock_key = zlib.crc32(f"hoist-outbox:{table.schema}".encode())

    async def add(
        self,
        session: AsyncSession,
        spec: EventSpec[Any],
        data: BaseModel,
        *,
        event_id: str | None = None,
    ) -> env.Envelope[Any]:
        """Queue an event in ``session``'s transaction; it is published once that commits.

        Pass a deterministic ``event_id`` for facts that a retried transaction may write
        again: the second row is ignored here and a second publish is dropped by JetStream.
        """
        envelope = env.build(spec, data, source=self.bus.source, event_id=event_id)
        await session.execute(
            pg_insert(self.table)
            .values(
                event_id=envelope.id,
                subject=envelope.subject,
                event_type=envelope.type,
                delivery=spec.delivery.value,
                envelope=json.loads(env.encode(envelope)),
            )
            .on_conflict_do_nothing(index_elements=["event_id"])
        )
        event.listen(session.sync_session, "after_commit", lambda _s: self._wake.set(), once=True)
        return envelope

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Publish pending rows forever; woken by commits, polling as a safety net."""
        last_prune = datetime.min.replace(tzinfo=UTC)
        backoff = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_seconds)
            self._wake.clear()
            try:
                while await self.publish_pending() >= self.settings.batch_size:
                    pass
                backoff = 0.0
                if datetime.now(UTC) - last_prune > timedelta(minutes=10):
                    await self.prune()
                    last_prune = datetime.now(UTC)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Failing again at once on every commit's wake-up would only spin: back off,
                # doubling up to 10 s, until a round succeeds.
                backoff = min(max(backoff * 2, self.settings.poll_seconds), 10.0)
                log.warning("outbox relay: %s; retry in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)

    async def publish_pending(self) -> int:
        """Publish one batch in order; returns how many rows it published.

        One relay at a time per schema (advisory lock), so events leave in commit order
        even with several replicas; the others find the lock taken and skip the round.
        """
        t = self.table
        published: list[int] = []
        async with self.engine.begin() as conn:
            got = await conn.scalar(
                text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": self._lock_key}
            )
            if not got:
                return 0
            rows = (
                await conn.execute(
                    select(
                        t.c.seq,
                        t.c.subject,
                        t.c.event_id,
                        t.c.event_type,
                        t.c.delivery,
                        t.c.envelope,
                    )
                    .where(t.c.published_at.is_(None))
                    .order_by(t.c.seq)
                    .limit(self.settings.batch_size)
                )
            ).all()
            failure: str | None = None
            for row in rows:
                try:
                    await self.bus.publish_raw(
                        row.subject,
                        json.dumps(row.envelope, separators=(",", ":")).encode(),
                        event_id=row.event_id,
                        ce_type=row.event_type,
                        delivery=Delivery(row.delivery),
                    )
                except nats.errors.MaxPayloadError as exc:
                    # Permanent: retrying cannot shrink it, and rows leave in order, so
                    # keeping it would hold back every later event of this service.
                    log.error(
                        "outbox relay gave up on %s %s (%s): larger than the server accepts",
                        row.event_type,
                        row.event_id,
                        exc,
                    )
                    await conn.execute(
                        update(t)
                        .where(t.c.seq == row.seq)
                        .values(
                            attempts=t.c.attempts + 1,
                            last_error=f"gave up, never published: {exc}"[:1000],
                            published_at=func.now(),
                        )
                    )
                    continue
                except (BusUnavailable, ConnectionError) as exc:
                    failure = str(exc)
                    await conn.execute(
                        update(t)
                        .where(t.c.seq == row.seq)
                        .values(attempts=t.c.attempts + 1, last_error=failure[:1000])
                    )
                    break
                published.append(row.seq)
            if published:
                await conn.execute(
                    update(t).where(t.c.seq.in_(published)).values(published_at=func.now())
                )
        if failure:
            raise BusUnavailable(f"{len(published)} published, then: {failure}")
        return len(published)

    async def prune(self) -> None:
        """Forget published rows (and old inbox ids) past their retention."""
        cutoff = datetime.now(UTC) - timedelta(hours=self.settings.retention_hours)
        async with self.engine.begin() as conn:
            await conn.execute(delete(self.table).where(self.table.c.published_at < cutoff))
            if self.inbox is not None:
                old = datetime.now(UTC) - self.inbox_retention
                await conn.execute(delete(self.inbox).where(self.inbox.c.handled_at < old))

    async def pending(self) -> int:
        async with self.engine.connect() as conn:
            count = await conn.scalar(
                select(func.count())
                .select_from(self.table)
                .where(self.table.c.published_at.is_(None))
            )
        return int(count or 0)


Effect = Callable[[env.Envelope[Any], AsyncSession], Awaitable[None]]


def idempotent(
    sessionmaker: async_sessionmaker[AsyncSession], inbox: Table, consumer: str, effect: Effect
) -> Callable[[env.Envelope[Any]], Awaitable[None]]:
    """Turn ``effect(event, session)`` into a bus handler that applies it exactly once.

    The effect runs in a transaction that also claims the event id in the inbox; a repeat
    delivery finds the claim and does nothing. An exception rolls back both.
    """

    async def handler(event: env.Envelope[Any]) -> None:
        async with sessionmaker() as session, session.begin():
            if not await claim(session, inbox, consumer, event):
                log.info("event already handled; acknowledging the repeat")
                return
            await effect(event, session)

    return handler


def create_tables(bind: Any, schema: str) -> None:
    """Create the inbox and outbox of ``schema`` (used by each service's first migration).

    The column layout here is version 1 of these tables; a change to it is a new migration
    in every service, never an edit of this function's effect on existing databases.
    """
    service_metadata(schema).create_all(bind)


def drop_tables(bind: Any, schema: str) -> None:
    service_metadata(schema).drop_all(bind)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def service_metadata(schema: str) -> MetaData:
    """A service's metadata: its own schema, stable constraint names (so migrations can
    name them), and the inbox and outbox every service has."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
        raise ValueError(f"schema name {schema!r}: lower-case letters, digits and _ only")
    md = MetaData(schema=schema, naming_convention=NAMING)
    inbox_table(md)
    outbox_table(md)
    return md
