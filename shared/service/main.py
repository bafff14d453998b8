"""Command line of every service: ``python -m services.<name> [serve|migrate|downgrade REV]``.

Uvicorn turns SIGTERM and SIGINT into the application's shutdown, which runs
``Runtime.stop()``: the graceful drain Kubernetes expects within its termination grace period.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from types import FrameType

import uvicorn

from shared import logs
from shared.db import engine as dbengine
from shared.db import migrating
from shared.service.app import create_app
from shared.service.spec import ServiceSpec
from shared.settings import HoistSettings

log = logging.getLogger("hoist.main")


class _Server(uvicorn.Server):
    """Uvicorn re-raises SIGTERM after its graceful shutdown, so the process dies "killed by
    signal". After a completed drain we exit 0 instead: it is a clean stop, and a non-zero
    status would make Kubernetes (and the tests) read it as a crash."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def main(spec: ServiceSpec, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"hoist-{spec.name}", description=spec.summary)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the API and handle events (the default)")
    commands.add_parser("migrate", help="apply database migrations, then exit")
    down = commands.add_parser("downgrade", help="revert database migrations to REVISION")
    down.add_argument("revision", help="an Alembic revision, or 'base' to drop everything")
    args = parser.parse_args(argv)

    try:
        settings = HoistSettings()
    except Exception as exc:  # pydantic's message names each bad variable
        print(f"hoist-{spec.name}: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    logs.configure(spec.name, settings.log)

    if args.command in ("migrate", "downgrade"):
        return asyncio.run(_migrate(spec, settings, args.command, getattr(args, "revision", "")))

    server = _Server(
        uvicorn.Config(
            create_app(spec, settings),
            host=settings.http.host,
            port=settings.http.port or spec.port,
            log_config=None,  # ours, set above: JSON lines with correlation ids
            access_log=False,  # the app logs requests itself, with request ids
            timeout_graceful_shutdown=int(settings.http.shutdown_grace_seconds),
            lifespan="on",
        )
    )
    server.run()
    return 0 if server.started else 1


async def _migrate(spec: ServiceSpec, settings: HoistSettings, command: str, rev: str) -> int:
    engine = dbengine.create_engine(
        settings.database, schema=spec.schema, application=f"hoist-{spec.name}-migrate"
    )
    try:
        if command == "migrate":
            await migrating.upgrade(engine, spec.migrations, spec.schema)
        else:
            await migrating.downgrade(engine, spec.migrations, spec.schema, rev)
        log.info(
            "schema %s at revision %s", spec.schema, await migrating.current(engine, spec.schema)
        )
        return 0
    except Exception as exc:
        log.error("migration failed: %s", exc)
        return 1
    finally:
        await engine.dispose()
