"""Fault "maintenance": the engine is down for maintenance and Apache answers for it.

On a real engine machine httpd fronts the engine (`/ovirt-engine/...`); while the engine
service is stopped (engine-setup, an upgrade, a restart) httpd's proxy answers every API and
SSO request with its own `503 Service Unavailable` HTML page, not an oVirt fault document.
Clients must take it as "retry later", not as a refusal or a malformed answer. The image
data path (imageio on the hosts and the engine's imageio proxy) is its own service and keeps
serving transfers already started.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Receive, Scope, Send

PAGE = b"""<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">
<html><head>
<title>503 Service Unavailable</title>
</head><body>
<h1>Service Unavailable</h1>
<p>The server is temporarily unable to service your
request due to maintenance downtime or capacity
problems. Please try again later.</p>
</body></html>
"""


class Window:
    """When the engine is down: until a loop time (0: up)."""

    def __init__(self) -> None:
        self.until = 0.0
        self.refused = 0  # requests answered 503, for tests to assert on

    def start(self, seconds: float) -> None:
        self.until = asyncio.get_running_loop().time() + seconds

    def end(self) -> None:
        self.until = 0.0

    @property
    def active(self) -> bool:
        return self.until > 0 and asyncio.get_running_loop().time() < self.until


class Maintenance:
    """ASGI middleware: the 503 page for the engine's paths while the window is open."""

    def __init__(self, app: ASGIApp, window: Window) -> None:
        self.app = app
        self.window = window

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if (
            scope["type"] != "http"
            or not path.startswith("/ovirt-engine")
            or not self.window.active
        ):
            await self.app(scope, receive, send)
            return
        self.window.refused += 1
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"text/html; charset=iso-8859-1"),
                    (b"content-length", str(len(PAGE)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": PAGE})
