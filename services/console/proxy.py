"""Forwarding ``/api/v1/...`` to the service that owns the path, streamed both ways.

Only the headers the APIs read go up (the token, content negotiation, conditional requests,
``Last-Event-ID`` to resume an event stream, the request id) and only those a client reads
come back, so nothing about the browser or the hop leaks to a service. Bodies are streamed,
never buffered: a plan of 20,000 VMs goes up as it comes, and a server-sent-events stream
comes down frame by frame for as long as the browser keeps it open.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from shared.apiroutes import ROUTES, service_of
from shared.settings import ConsoleSettings

REQUEST_HEADERS = (
    "authorization",
    "content-type",
    "accept",
    "if-match",
    "if-none-match",
    "last-event-id",
    "x-request-id",
)
RESPONSE_HEADERS = (
    "content-type",
    "etag",
    "retry-after",
    "www-authenticate",
    "cache-control",
    "x-request-id",
    "x-accel-buffering",
    "location",
)


def upstreams(settings: ConsoleSettings) -> dict[str, str]:
    return {
        "inventory": settings.inventory_url.rstrip("/"),
        "planner": settings.planner_url.rstrip("/"),
        "orchestrator": settings.orchestrator_url.rstrip("/"),
        "progress": settings.progress_url.rstrip("/"),
    }


def client(settings: ConsoleSettings) -> httpx.AsyncClient:
    verify: ssl.SSLContext | bool = True
    if settings.ca_file is not None:
        verify = ssl.create_default_context(cafile=str(settings.ca_file))
    # No read timeout on the client: event streams stay open for hours; ordinary calls get
    # one per request (``forward``).
    return httpx.AsyncClient(
        verify=verify,
        timeout=httpx.Timeout(settings.timeout_seconds, read=None),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),
    )


def _is_stream(request: Request) -> bool:
    return request.url.path.endswith("/events") or "text/event-stream" in request.headers.get(
        "accept", ""
    )


def _why(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused or unreachable"
    return type(exc).__name__


async def forward(request: Request, http: httpx.AsyncClient, urls: dict[str, str]) -> Response:
    path = request.url.path
    service = service_of(path)
    if service is None:
        served = ", ".join(p for prefixes in ROUTES.values() for p in prefixes)
        return JSONResponse(
            {"detail": f"no Hoist API serves {path}; the APIs are under: {served}"},
            status_code=404,
        )
    base = urls[service]
    headers = {k: v for k, v in request.headers.items() if k.lower() in REQUEST_HEADERS}
    content: Any = request.stream() if request.method in ("POST", "PUT", "PATCH") else None
    timeout = httpx.Timeout(http.timeout.connect, read=None if _is_stream(request) else 30.0)
    upstream_request = http.build_request(
        request.method,
        httpx.URL(base + path, query=request.url.query.encode()),
        headers=headers,
        content=content,
        timeout=timeout,
    )
    try:
        upstream = await http.send(upstream_request, stream=True)
    except httpx.TransportError as exc:
        return JSONResponse(
            {"detail": f"the {service} service at {base} did not answer ({_why(exc)}); retry"},
            status_code=502,
            headers={"Retry-After": "2"},
        )
    kept = {k: v for k, v in upstream.headers.items() if k.lower() in RESPONSE_HEADERS}
    return StreamingResponse(
        upstream.aiter_bytes(),
        status_code=upstream.status_code,
        headers=kept,
        background=BackgroundTask(upstream.aclose),
    )
