"""Alembic migrations, one history per service, each in the service's own schema.

Each service keeps its revisions in ``services/<name>/migrations/versions`` and its version
table inside its schema, so services migrate independently and never touch each other's
tables. Replicas starting together serialize on a PostgreSQL advisory lock: the first one
migrates, the others wait and find nothing left to do.
"""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine

VERSION_TABLE = "alembic_version"

# Alembic keeps its migration context in module globals: two migrations interleaved in one
# event loop would trample each other. Processes are serialized by the advisory lock below.
_in_process = asyncio.Lock()


def _config(migrations: Path, schema: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations))
    cfg.attributes["schema"] = schema
    return cfg


def _lock_key(schema: str) -> int:
    # A stable 32-bit key per schema; hash() is salted per process, so not usable here.
    return zlib.crc32(f"hoist-migrate:{schema}".encode())


async def upgrade(
    engine: AsyncEngine, migrations: Path, schema: str, revision: str = "head"
) -> None:
    await _run(engine, migrations, schema, lambda cfg: command.upgrade(cfg, revision))


async def downgrade(engine: AsyncEngine, migrations: Path, schema: str, revision: str) -> None:
    await _run(engine, migrations, schema, lambda cfg: command.downgrade(cfg, revision))


async def current(engine: AsyncEngine, schema: str) -> str | None:
    """The revision the database is at, or None when the service never migrated it."""

    # Plain SQL rather than a MigrationContext: this runs on every status request, and
    # Alembic's context announces itself in the log each time it is made.
    table = f'"{schema}".{VERSION_TABLE}'
    async with engine.connect() as conn:
        if await conn.scalar(text("SELECT to_regclass(:t)"), {"t": table}) is None:
            return None
        # The schema is a service's own name, checked by service_metadata(): not user input.
        version = await conn.scalar(text(f"SELECT version_num FROM {table} LIMIT 1"))  # noqa: S608
        return str(version) if version is not None else None


def head(migrations: Path) -> str | None:
    return ScriptDirectory.from_config(_config(migrations, "")).get_current_head()


async def _run(engine: AsyncEngine, migrations: Path, schema: str, action: Any) -> None:
    cfg = _config(migrations, schema)

    def run(conn: Connection) -> None:
        cfg.attributes["connection"] = conn
        action(cfg)

    async with _in_process, engine.connect() as conn:
        await conn.run_sync(run)
        await conn.commit()


def run_env(metadata: MetaData) -> None:
    """The body of every service's ``migrations/env.py``.

    Alembic calls it with the connection that ``upgrade()``/``downgrade()`` handed over; the
    way to migrate by hand is ``python -m services.<name> migrate``, not the alembic CLI.
    """
    schema = metadata.schema
    if not schema:
        raise RuntimeError("a service's metadata must name its schema")
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `python -m services.<name> migrate`")
    _migrate(connection, metadata, schema)


def _migrate(conn: Connection, metadata: MetaData, schema: str) -> None:
    context.configure(
        connection=conn,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        version_table_schema=schema,
        include_schemas=True,
        include_name=lambda name, type_, _parent: type_ != "schema" or name == schema,
        compare_type=True,
    )
    with context.begin_transaction():
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(schema)})
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.run_migrations()
