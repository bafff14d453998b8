"""The console's application: ``/ui`` (the pages, packaged with Hoist), ``/api/v1/...``
(forwarded, ``proxy``), ``/healthz`` and ``/readyz``.

The pages are plain ES modules and CSS, no build step: what is in ``static/`` is what the
browser runs. They carry a strict Content-Security-Policy (scripts, styles and calls from
this origin only, no inline code, no framing), so an injected string can never run.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.console import proxy
from shared.settings import HoistSettings

STATIC = Path(__file__).parent / "static"
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # The pages change with Hoist: revalidate every time (ETags make that a 304).
    "Cache-Control": "no-cache",
}


def create_app(settings: HoistSettings) -> Starlette:
    urls = proxy.upstreams(settings.console)
    holder: dict[str, httpx.AsyncClient] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with proxy.client(settings.console) as http:
            holder["http"] = http
            yield

    async def api(request: Request) -> Response:
        return await proxy.forward(request, holder["http"], urls)

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "service": "console"})

    async def metrics(_request: Request) -> Response:
        # The process's own (CPU, memory, open files): what a ServiceMonitor scrapes.
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def readyz(_request: Request) -> JSONResponse:
        # Ready once it serves: a service being down is the page's to say, per call, not a
        # reason to take the console (and its error messages) away.
        return JSONResponse({"status": "ready", "service": "console", "checks": {}})

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/", _redirect("/ui/")),
            Route("/ui", _redirect("/ui/")),
            Mount("/ui", StaticFiles(directory=STATIC, html=True), name="ui"),
            Route("/api/{rest:path}", api, methods=METHODS),
        ],
        lifespan=lifespan,
        middleware=[Middleware(SecureUi)],
    )

    return app


class SecureUi:
    """The security headers on every answer under ``/ui`` (pure ASGI, so the API's event
    streams pass through untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/ui"):
            await self.app(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, secured)


def _redirect(to: str) -> Callable[[Request], Awaitable[Response]]:
    async def go(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        return RedirectResponse(f"{root}{to}", status_code=307)

    return go
