"""``hoist-console``: serve the web console (docs/console.md)."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from services.console import PORT
from services.console.app import create_app
from shared import logs
from shared.service.main import _Server
from shared.settings import HoistSettings


def main(argv: list[str] | None = None) -> int:
    # Like every Hoist command, --help answers (and nothing else is taken): the image test
    # runs each console script so; the settings come from HOIST_* variables only.
    argparse.ArgumentParser(
        prog="hoist-console",
        description="Serve the web console at /ui and forward /api/v1/* to the services "
        "(docs/console.md). Configured by HOIST_* variables.",
    ).parse_args(argv)
    try:
        settings = HoistSettings()
    except Exception as exc:  # pydantic's message names each bad variable
        print(f"hoist-console: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    logs.configure("console", settings.log)
    # Exits 0 after a clean drain on SIGTERM, as the services do.
    server = _Server(
        uvicorn.Config(
            create_app(settings),
            host=settings.http.host,
            port=settings.http.port or PORT,
            log_config=None,
            access_log=False,
            root_path=settings.http.root_path,
            timeout_graceful_shutdown=int(settings.http.shutdown_grace_seconds),
            lifespan="on",
        )
    )
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
