"""The controller's small HTTP server: ``/healthz``, ``/readyz``, ``/metrics``.

``/healthz`` fails only when the process is broken (a watch or worker task died), so the
kubelet restarts it; ``/readyz`` says what the controller still waits for (registration,
a watch's first list, NATS) and is what a rollout waits on. No API, no credentials: the
port serves nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger("hoist.controller.health")


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        healthy: Callable[[], bool],
        waiting_for: Callable[[], list[str]],
    ) -> None:
        self.host = host
        self.port = port
        self._healthy = healthy
        self._waiting_for = waiting_for
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0 and self._runner.addresses:  # an ephemeral port (tests)
            self.port = int(self._runner.addresses[0][1])
        log.info("health endpoints on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        ok = self._healthy()
        return web.json_response({"status": "ok" if ok else "broken"}, status=200 if ok else 503)

    async def _readyz(self, request: web.Request) -> web.Response:
        waiting = self._waiting_for()
        body = {"status": "ready" if not waiting else "waiting", "waiting_for": waiting}
        return web.json_response(body, status=503 if waiting else 200)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
