"""PostgreSQL: per-service migrations, the inbox, the outbox relay, per-test isolation."""

from __future__ import annotations

import asyncio
import importlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, func, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from shared import catalog
from shared import envelope as env
from shared import payloads as p
from shared.bus import Bus, Consumer, Subscription
from shared.db import messaging, migrating
from shared.devservices import DevServices, restart_nats
from shared.settings import HoistSettings, OutboxSettings
from tests.conftest import SERVICES, create_database, drop_database, eventually


def spec(name: str) -> Any:
    return importlib.import_module(f"services.{name}").SPEC


@pytest.fixture
async def empty_engine(servers: DevServices) -> AsyncIterator[AsyncEngine]:
    url = await create_database(servers.database_url)
    engine = create_async_engine(url)
    yield engine
    await engine.dispose()
    await drop_database(url)


async def tables_of(engine: AsyncEngine, schema: str) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names(schema=schema)))


async def test_migrations_from_an_empty_database(empty_engine: AsyncEngine) -> None:
    for name in SERVICES:
        s = spec(name)
        assert await migrating.current(empty_engine, s.schema) is None
        await migrating.upgrade(empty_engine, s.migrations, s.schema)
        assert await migrating.current(empty_engine, s.schema) == migrating.head(s.migrations)
        tables = {t.name for t in s.metadata.sorted_tables}
        assert await tables_of(empty_engine, name) == {"alembic_version", *tables}
        assert {"inbox", "outbox"} <= tables

    # Each service's history is its own: reverting one leaves the others untouched.
    planner = spec("planner")
    await migrating.downgrade(empty_engine, planner.migrations, planner.schema, "base")
    assert await tables_of(empty_engine, "planner") == {"alembic_version"}
    assert await tables_of(empty_engine, "orchestrator") == {
        "alembic_version",
        *(t.name for t in spec("orchestrator").metadata.sorted_tables),
    }
    await migrating.upgrade(empty_engine, planner.migrations, planner.schema)
    assert await migrating.current(empty_engine, "planner") == "0006"


async def test_models_match_migrations(migrated_engine: AsyncEngine) -> None:
    """What the code declares is what the migrations built (no forgotten revision)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    for name in SERVICES:
        md = spec(name).metadata

        def diff(conn: Any, md: MetaData = md, schema: str = name) -> list[Any]:
            ctx = MigrationContext.configure(
                conn,
                opts={
                    "include_schemas": True,
                    "include_name": lambda n, t, _p: t != "schema" or n == schema,
                    "version_table_schema": schema,
                },
            )
            return [d for d in compare_metadata(ctx, md) if "alembic_version" not in str(d)]

        async with migrated_engine.connect() as conn:
            assert await conn.run_sync(diff) == [], name


async def test_concurrent_migrations_serialize(empty_engine: AsyncEngine) -> None:
    """Three replicas starting at once: one migrates, the others wait and find it done."""
    import os
    import sys

    url = empty_engine.url.render_as_string(hide_password=False)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.progress",
            "migrate",
            env={**os.environ, "HOIST_DATABASE_URL": url, "HOIST_LOG_FORMAT": "text"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        for _ in range(3)
    ]
    outputs = [await p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    ran = sum(b"Running upgrade" in out for out, _ in outputs)
    assert ran == 1, outputs
    assert await migrating.current(empty_engine, "progress") == "0002"


async def test_rolled_back_isolation_part_1(db_session: AsyncSession) -> None:
    await db_session.execute(
        text("INSERT INTO planner.inbox (consumer, event_id, event_type) VALUES ('iso', 'x', 't')")
    )
    await db_session.commit()  # a savepoint inside the test's transaction
    assert (
        await db_session.scalar(text("SELECT count(*) FROM planner.inbox WHERE consumer = 'iso'"))
        == 1
    )


async def test_rolled_back_isolation_part_2(db_session: AsyncSession) -> None:
    assert (
        await db_session.scalar(text("SELECT count(*) FROM planner.inbox WHERE consumer = 'iso'"))
        == 0
    )


def cancel_event(event_id: str = "evt-1") -> env.Envelope[Any]:
    data = p.PlanCancelRequested(plan_id="p", migration_id="m")
    return env.build(catalog.PLAN_CANCEL_REQUESTED, data, source="/t", event_id=event_id)


async def test_inbox_claims_once(db_session: AsyncSession) -> None:
    inbox = spec("orchestrator").metadata.tables["orchestrator.inbox"]
    event = cancel_event()
    assert await messaging.claim(db_session, inbox, "c1", event) is True
    assert await messaging.claim(db_session, inbox, "c1", event) is False
    assert await messaging.claim(db_session, inbox, "c2", event) is True  # other consumer


@pytest.fixture
async def scratch_schema(migrated_engine: AsyncEngine) -> AsyncIterator[MetaData]:
    """Inbox and outbox in a schema of this test alone (the relay commits for real)."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    async with migrated_engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(messaging.create_tables, schema)
    yield messaging.service_metadata(schema)
    async with migrated_engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


async def test_idempotent_handler_applies_effects_once(
    migrated_engine: AsyncEngine, scratch_schema: MetaData
) -> None:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    inbox = scratch_schema.tables[f"{scratch_schema.schema}.inbox"]
    effects: list[str] = []

    async def effect(event: env.Envelope[Any], session: AsyncSession) -> None:
        effects.append(event.id)
        if len(effects) == 1:
            raise RuntimeError("crash before commit: the claim must roll back too")

    handler = messaging.idempotent(async_sessionmaker(migrated_engine), inbox, "c", effect)
    event = cancel_event("once")
    with pytest.raises(RuntimeError):
        await handler(event)
    await handler(event)  # the retry applies it
    await handler(event)  # a redelivery after a lost ack does nothing
    assert effects == ["once", "once"]


def outbox_for(engine: AsyncEngine, md: MetaData, bus: Bus) -> messaging.Outbox:
    return messaging.Outbox(
        engine, md.tables[f"{md.schema}.outbox"], bus, OutboxSettings(poll_seconds=0.1)
    )


async def test_outbox_publishes_after_commit_only(
    migrated_engine: AsyncEngine, scratch_schema: MetaData, bus: Bus, settings: HoistSettings
) -> None:
    outbox = outbox_for(migrated_engine, scratch_schema, bus)
    got: list[str] = []

    async def handler(event: env.Envelope[Any]) -> None:
        got.append(event.id)

    consumer = Consumer(
        bus,
        Subscription("outbox-test", (catalog.PLAN_CANCEL_REQUESTED,), "t", handler=handler),
        settings.consumer,
    )
    await consumer.declare()
    consumer.start()
    relay = asyncio.create_task(outbox.run())
    data = p.PlanCancelRequested(plan_id="p", migration_id="m")
    async with AsyncSession(migrated_engine) as session:
        async with session.begin():
            await outbox.add(session, catalog.PLAN_CANCEL_REQUESTED, data, event_id="committed")
        async with session.begin():
            await outbox.add(session, catalog.PLAN_CANCEL_REQUESTED, data, event_id="rolled-back")
            await session.rollback()
        async with session.begin():  # the same fact written twice: stored once
            await outbox.add(session, catalog.PLAN_CANCEL_REQUESTED, data, event_id="committed")
    await eventually(lambda: got == ["committed"], what="publish of the committed event")
    await asyncio.sleep(0.3)
    relay.cancel()
    await consumer.stop(1)
    assert got == ["committed"]
    assert await outbox.pending() == 0


async def test_an_event_too_large_for_nats_blocks_nothing(
    migrated_engine: AsyncEngine, scratch_schema: MetaData, bus: Bus
) -> None:
    """NATS refuses a message over its max_payload for ever: the relay gives that one up
    (marked, logged) and publishes the events after it, rather than stall behind it."""
    outbox = outbox_for(migrated_engine, scratch_schema, bus)
    huge = p.PlanCancelRequested(plan_id="p", migration_id="m", reason="x" * (2 << 20))
    small = p.PlanCancelRequested(plan_id="p", migration_id="m")
    async with AsyncSession(migrated_engine) as session, session.begin():
        await outbox.add(session, catalog.PLAN_CANCEL_REQUESTED, huge, event_id="huge")
        await outbox.add(session, catalog.PLAN_CANCEL_REQUESTED, small, event_id="small")
    assert await outbox.publish_pending() == 1
    assert await outbox.pending() == 0
    t = scratch_schema.tables[f"{scratch_schema.schema}.outbox"]
    async with migrated_engine.connect() as conn:
        rows = {r.event_id: r for r in await conn.execute(select(t))}
    assert rows["huge"].last_error.startswith("gave up")
    assert rows["small"].last_error is None


async def test_outbox_survives_nats_outage(
    migrated_engine: AsyncEngine,
    scratch_schema: MetaData,
    settings: HoistSettings,
    tmp_path: Path,
) -> None:
    """Events written while NATS is down leave, in order, once it is back."""
    from shared.devservices import start_nats, stop_nats

    nats = await start_nats(tmp_path)  # our directory: stopping keeps its data for a restart
    try:
        bus = Bus(settings.nats.model_copy(update={"url": nats.url}), source="/t")
        await bus.connect()
        await bus.ensure_streams()
        outbox = outbox_for(migrated_engine, scratch_schema, bus)
        await stop_nats(nats)
        async with AsyncSession(migrated_engine) as session, session.begin():
            for i in range(5):
                data = p.PlanCancelRequested(plan_id=f"p{i}", migration_id="m")
                await outbox.add(session, catalog.PLAN_CANCEL_REQUESTED, data, event_id=f"e{i}")
        with pytest.raises(Exception, match="0 published"):
            await outbox.publish_pending()
        assert await outbox.pending() == 5

        nats = await restart_nats(nats)
        await eventually(lambda: bus.connected, what="reconnect", within=20)
        await eventually(_published_all(outbox), what="outbox drained", within=20)
        stream = bus.stream_name(catalog.PLANS)
        ids = [
            (await bus.js.get_msg(stream, seq)).headers["Nats-Msg-Id"]  # type: ignore[index]
            for seq in range(1, 6)
        ]
        assert ids == [f"e{i}" for i in range(5)]
        t = scratch_schema.tables[f"{scratch_schema.schema}.outbox"]
        async with migrated_engine.connect() as conn:
            attempts = await conn.scalar(select(func.max(t.c.attempts)))
        assert attempts is not None
        assert attempts >= 1
        await bus.drain()
    finally:
        await stop_nats(nats)


def _published_all(outbox: messaging.Outbox) -> Any:
    async def check() -> bool:
        try:
            await outbox.publish_pending()
        except Exception:
            return False
        return await outbox.pending() == 0

    return check
