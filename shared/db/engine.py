"""Connections to PostgreSQL: one async engine per service process, scoped to its schema."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from sqlalchemy import BindParameter, bindparam, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from shared.settings import DatabaseSettings


def create_engine(settings: DatabaseSettings, *, schema: str, application: str) -> AsyncEngine:
    """An engine whose connections look in the service's schema first.

    ``search_path`` makes unqualified SQL (psql sessions, ad-hoc queries in tests) land in the
    service's own schema; the models name their schema explicitly anyway.
    """
    return create_async_engine(
        settings.url.get_secret_value(),
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout,
        pool_pre_ping=True,  # a PostgreSQL restart leaves dead pooled connections behind
        connect_args={
            "timeout": settings.connect_timeout,
            "server_settings": {
                "application_name": application,
                "search_path": f"{schema},public",
                "statement_timeout": str(settings.statement_timeout_ms),
            },
        },
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects stay readable after commit without another round trip.
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    """Raise unless PostgreSQL answers a query now (for /readyz)."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


def values(name: str, members: Iterable[StrEnum]) -> BindParameter[Any]:
    """An IN-list for ``text()`` SQL (``phase IN :active``), rendered inline at execution.

    Why not a plain bound parameter: asyncpg prepares each statement, and after five runs
    PostgreSQL may switch to a generic plan, which cannot prove that ``phase = ANY($1)``
    implies the phase list of a partial index's predicate, and so loses the index (the
    runner's ``vms_due``, admission's ``vms_waiting``). ``literal_execute`` renders the
    values into the statement, giving the same SQL text as the literal list; ``expanding``
    gives the parentheses. The order of ``members`` is the order rendered: pass a tuple,
    never a set (whose order changes from one process to the next).
    """
    return bindparam(name, [m.value for m in members], expanding=True, literal_execute=True)
