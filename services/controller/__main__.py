"""``python -m services.controller`` (or ``hoist-populator-controller``).

The populator controller process. It needs the Kubernetes API of the cluster it runs in
(``HOIST_KUBE_KUBECONFIG``, else the pod's service account), each remote target cluster's
through its provider's Secret (``services.controller.fleet``), and NATS (``HOIST_NATS_URL``,
``HOIST_NATS_PREFIX``); no database. Its settings are ``HOIST_ORCHESTRATOR_*``
(``populator_image``, ``controller_workers``, ``controller_port``...): the group it had
as a process of the orchestrator, kept so no deployment has to change. Each dependency is
retried until it answers, while ``/healthz`` already answers and ``/readyz`` says what is
awaited. SIGTERM (or SIGINT) stops it: watches end, in-flight reconciles finish within
``HOIST_HTTP_SHUTDOWN_GRACE_SECONDS``, NATS is drained, and it exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.controller import COMPONENT_NAME
from services.controller.api import HealthServer
from services.controller.domain import Controller, run_until
from services.controller.fleet import Fleet
from shared import logs
from shared.bus import Bus
from shared.kube import KubeConnection, connect_local
from shared.settings import HoistSettings

log = logging.getLogger("hoist.controller.main")
T = TypeVar("T")
SOURCE = "/hoist/orchestrator/populator-controller"
"""The CloudEvents ``source`` of its events: spelled as when the controller was part of the
orchestrator, because integrators may filter on it (a wire string, kept)."""


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    try:
        settings = HoistSettings()
    except Exception as exc:  # pydantic's message names each bad variable
        print(f"hoist-populator-controller: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    logs.configure(COMPONENT_NAME, settings.log)
    return asyncio.run(serve(settings))


async def _retry(stop: asyncio.Event, what: str, attempt: Callable[[], Awaitable[T]]) -> T | None:
    """``attempt`` until it succeeds (backoff to 30 s); None when told to stop first."""
    delay = 1.0
    while not stop.is_set():
        try:
            return await attempt()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s failed (%s); trying again in %.0f s", what, exc, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, 30.0)
    return None


async def serve(settings: HoistSettings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    controller: Controller | None = None
    waiting = ["the Kubernetes API", "NATS"]

    def healthy() -> bool:
        return controller.healthy if controller is not None else True

    def waiting_for() -> list[str]:
        return controller.waiting_for() if controller is not None else list(waiting)

    health = HealthServer(
        settings.http.host, settings.orchestrator.controller_port, healthy, waiting_for
    )
    await health.start()
    kube: KubeConnection | None = None
    bus = Bus(settings.nats, source=SOURCE)
    try:
        kube = await _retry(stop, "connecting to Kubernetes", lambda: connect_local(settings.kube))
        if kube is None:
            return 0
        waiting.remove("the Kubernetes API")

        async def connect_bus() -> bool:
            await bus.connect()
            await bus.ensure_streams()
            return True

        if not await _retry(stop, "connecting to NATS", connect_bus):
            return 0
        controller = Controller(kube.api, settings.orchestrator, bus)
        # Remote target clusters: one controller each, from the providers' Secrets.
        fleet = Fleet(kube.api, settings.kube.namespace, settings.orchestrator, bus)
        if await run_until(stop, controller):
            await fleet.start()
            await stop.wait()
        log.info("stopping: finishing in-flight work")
        await fleet.stop(grace=settings.http.shutdown_grace_seconds)
        await controller.stop(grace=settings.http.shutdown_grace_seconds)
        return 0
    finally:
        await bus.drain()
        if kube is not None:
            await kube.close()
        await health.stop()


if __name__ == "__main__":
    sys.exit(main())
