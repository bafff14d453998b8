"""Fixtures: real NATS and PostgreSQL servers, isolated per test.

The servers are private ones started for the test session (``shared.devservices``), unless
``HOIST_NATS_URL`` / ``HOIST_DATABASE_URL`` name others. Either way no test sees another's
state: each test gets its own NATS subject/stream prefix, the session gets a database of its
own (dropped at the end), and ``db_session`` rolls back everything a test wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from shared.bus import Bus
from shared.db import migrating
from shared.devservices import (
    DevServices,
    create_database,
    dev_services,
    drop_database,
    plain_dsn,
)
from shared.settings import HoistSettings

SERVICES = ("inventory", "planner", "orchestrator", "progress")
TOKEN = "test-token-0123456789"

__all__ = ["create_database", "drop_database", "plain_dsn"]  # where the tests import them from


@pytest.fixture(scope="session")
async def servers() -> AsyncIterator[DevServices]:
    async with dev_services() as ds:
        yield ds


@pytest.fixture(scope="session")
async def database_url(servers: DevServices) -> AsyncIterator[str]:
    url = await create_database(servers.database_url)
    yield url
    await drop_database(url)


@pytest.fixture(scope="session")
async def migrated_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The session database with every service's migrations applied."""
    import importlib

    engine = create_async_engine(database_url)
    for name in SERVICES:
        spec = importlib.import_module(f"services.{name}").SPEC
        await migrating.upgrade(engine, spec.migrations, spec.schema)
    yield engine
    await engine.dispose()


@pytest.fixture
async def db_session(migrated_engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session whose every write is rolled back after the test (commits become savepoints)."""
    async with migrated_engine.connect() as conn:
        trans = await conn.begin()
        session = AsyncSession(bind=conn, join_transaction_mode="create_savepoint")
        try:
            yield session
        finally:
            await session.close()
            await trans.rollback()


@pytest.fixture
def prefix() -> str:
    """A NATS prefix of this test alone: its subjects and streams are invisible to others."""
    return f"t{uuid.uuid4().hex[:12]}"


def make_settings(nats_url: str, database_url: str, prefix: str, **overrides: Any) -> HoistSettings:
    values: dict[str, Any] = {
        "nats": {"url": nats_url, "prefix": prefix},
        "database": {"url": database_url},
        "auth": {"tokens": [TOKEN]},
        "consumer": {"backoff_seconds": [0.2], "max_deliveries": 3, "ack_wait_seconds": 5},
        "outbox": {"poll_seconds": 0.2},
        "http": {"shutdown_grace_seconds": 5},
    }
    for group, fields in overrides.items():
        values.setdefault(group, {}).update(fields)
    return HoistSettings(**values)


@pytest.fixture
def settings(servers: DevServices, database_url: str, prefix: str) -> HoistSettings:
    return make_settings(servers.nats_url, database_url, prefix)


@pytest.fixture
async def bus(settings: HoistSettings) -> AsyncIterator[Bus]:
    b = Bus(settings.nats, source="/hoist/tests")
    await b.connect()
    await b.ensure_streams()
    yield b
    await b.delete_streams()
    await b.drain()


@pytest.fixture(scope="session")
def cloud() -> Iterator[Any]:
    """One simulated OpenStack cloud (real Keystone and Glance, ~20 s to start) for the
    inventory's and the planner's tests, with the servers of the scenario of
    ``tests.inventory.sources.openstack``. (The simulator's and the populator's tests, in
    ``tests/sim/openstack`` and ``tests/populators/openstack``, use ``openstack_sim_cloud``.)"""
    from sim.openstack.cloud import running_cloud
    from tests.inventory.sources.openstack.conftest import SCENARIO

    with running_cloud(SCENARIO) as c:
        yield c


@pytest.fixture(scope="session")
def openstack_sim_cloud() -> Iterator[Any]:
    """The simulated cloud of the OpenStack simulator's and populator's tests (the scenario
    of ``tests.sim.openstack.fixtures``), where both ``tests/sim/openstack`` and
    ``tests/populators/openstack`` see it (as ``cloud``): defined here, it is started once
    for both, as when they were one directory."""
    from sim.openstack.cloud import running_cloud
    from tests.sim.openstack.fixtures import SCENARIO

    with running_cloud(SCENARIO) as c:
        yield c


@contextlib.asynccontextmanager
async def kube_client(sim: Any) -> AsyncIterator[Any]:
    """A kubernetes-asyncio ``ApiClient`` on a simulated cluster (``sim.kube.Cluster``), as
    a user's kubeconfig would give one."""
    from kubernetes_asyncio import client, config

    configuration = client.Configuration()
    await config.load_kube_config_from_dict(
        sim.kubeconfig_dict(), client_configuration=configuration
    )
    async with client.ApiClient(configuration) as api:
        yield api


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    within: float = 15.0,
    every: float = 0.05,
    what: str = "condition",
) -> None:
    """Poll until ``check`` holds; the bound is a hang guard, not a performance assertion."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within} s")
        await asyncio.sleep(every)
