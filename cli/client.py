"""The HTTP side: one ``httpx.AsyncClient`` per command, errors as exceptions the runner
prints precisely (an API's 4xx with its details; a refused connection or a TLS failure with
the URL it was about)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx

from cli.config import Settings

TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def seg(value: object) -> str:
    """``value`` as one path segment: every character a path gives meaning to (``/``, ``..``
    through its slash, ``?``, ``#``, ``%``) percent-encoded, so a name reaches the server as
    the name it is, never as a path to another object."""
    return quote(str(value), safe="")


class ApiError(Exception):
    """An API answered with an error status."""

    def __init__(self, method: str, url: str, status: int, body: Any, hint: str = "") -> None:
        super().__init__(f"{method} {url}: {status}")
        self.method, self.url, self.status, self.body = method, url, status, body
        #: What the user should check, when the status alone would mislead (a URL that
        #: points at another service answers 404 for a path it does not serve).
        self.hint = hint


class Unreachable(Exception):
    """No answer at all: refused, unresolvable, timed out, or TLS failed."""

    def __init__(self, url: str, why: str) -> None:
        super().__init__(f"{url}: {why}")
        self.url, self.why = url, why


def _why(exc: httpx.TransportError) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                f"TLS verification failed ({cause.verify_message}); give the API's CA with "
                "--ca-file (or caFile in the config file)"
            )
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed ({cause.reason or cause})"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused (is the service running at this URL?)"
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return str(exc) or type(exc).__name__


def _no_route(status: int, body: Any) -> bool:
    """A 404 from routing (no such path here), not one about a missing object: the
    framework's bare answer, or a page that is not JSON at all."""
    if status != 404:
        return False
    return body == {"detail": "Not Found"} or not isinstance(body, dict)


class Api:
    """Requests to the four services, authenticated, against their configured URLs."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http

    async def request(
        self,
        service: str,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        ok: tuple[int, ...] = (),
    ) -> httpx.Response:
        """The response of a 2xx (or a status in ``ok``); else ``ApiError``."""
        url = self.settings.url(service) + path
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            r = await self.http.request(method, url, params=clean, json=json)
        except httpx.TransportError as exc:
            raise Unreachable(self.settings.url(service), _why(exc)) from None
        if r.is_success or r.status_code in ok:
            return r
        try:
            body: Any = r.json()
        except ValueError:
            body = r.text
        hint = await self._wrong_service(service) if _no_route(r.status_code, body) else ""
        url = str(r.request.url.copy_with(query=None))
        raise ApiError(method, url, r.status_code, body, hint)

    async def _wrong_service(self, service: str) -> str:
        """Why a path has no route at this service's URL: the URL is another Hoist service
        (its ``/healthz`` names it), or something that is not Hoist at all."""
        base = self.settings.url(service)
        named: Any = None
        try:
            r = await self.http.get(f"{base}/healthz")
            named = r.json().get("service") if r.is_success else None
        except (httpx.HTTPError, ValueError, AttributeError):
            named = None
        where = f"HOIST_CLI_{service.upper()}_URL, --url or HOIST_CLI_URL"
        if named == service:
            return f"{base} is the {service} service, but it does not serve this path: is it older?"
        if isinstance(named, str) and named:
            return f"{base} is the {named} service, not the {service}: check {where}"
        return f"{base} does not look like Hoist's {service} service: check {where}"

    async def get(self, service: str, path: str, **params: Any) -> Any:
        return (await self.request(service, "GET", path, params=params)).json()

    async def post(self, service: str, path: str, body: Any = None, **params: Any) -> Any:
        r = await self.request(service, "POST", path, json=body, params=params)
        return r.json() if r.content else None

    async def put(self, service: str, path: str, body: Any = None) -> Any:
        r = await self.request(service, "PUT", path, json=body)
        return r.json() if r.content else None

    async def delete(self, service: str, path: str) -> None:
        await self.request(service, "DELETE", path)


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[Api]:
    headers = {"Accept": "application/json"}
    if settings.token:
        headers["Authorization"] = f"Bearer {settings.token}"
    verify: ssl.SSLContext | bool = settings.verify is not False
    if isinstance(settings.verify, str):
        verify = ssl.create_default_context(cafile=settings.verify)
    async with httpx.AsyncClient(
        headers=headers, verify=verify, timeout=TIMEOUT, follow_redirects=False
    ) as http:
        yield Api(settings, http)
