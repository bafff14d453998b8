"""Refusals before any work: the bearer token and the size of the body, before the body is read.

Why: a request's body used to be read, scanned for NUL and parsed before its token was looked
at, and with no limit. A 50 MB body without a token held the planner's event loop (its
``/healthz`` waited 1.85 s); one authenticated 50 MB body took the process to 456 MB.

``Gate`` is pure ASGI (never ``BaseHTTPMiddleware``, which buffers) and the outermost of the
app's middleware, so it answers before anything behind it calls ``receive()``:

- under ``/api/v1`` (but the public docs and ``openapi.json``): 401, 403 or 503 with the very
  body and headers the ``require_token`` dependency answers (``shared.service.auth.decide``
  decides both: a static token, or a TokenReview and a SubjectAccessReview);
- a ``Content-Length`` over ``HOIST_HTTP_MAX_BODY_BYTES``: 413 at once;
- a body without ``Content-Length`` (chunked) is counted as it is received: the first chunk
  that takes it over the limit raises ``BodyTooLarge``, answered 413.

What a refusal leaves unread the server discards as it arrives (uvicorn drops the body of
a request already answered): nothing of it is kept or parsed. The connection stays open, so
a client still sending reads the answer rather than a reset connection.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.service import auth
from shared.settings import HoistSettings

__all__ = ["API_PREFIX", "BodyTooLarge", "Gate", "Recorder"]

API_PREFIX = "/api/v1"

#: Told of each refusal the gate answers itself: scope, status, seconds spent, request id.
Recorder = Callable[[Scope, int, float, str], None]


class BodyTooLarge(HTTPException):
    """The body exceeds the limit; an ``HTTPException`` so a route reading the body answers
    it (413) rather than FastAPI's "error parsing the body" (400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"the request body is larger than {limit} bytes (HOIST_HTTP_MAX_BODY_BYTES)",
        )


class Gate:
    """The ASGI middleware; settings are read per request from ``app.state.settings``, as
    ``require_token`` reads them."""

    def __init__(
        self,
        app: ASGIApp,
        public: Collection[str] = (),
        record: Recorder | None = None,
        prefix: str = API_PREFIX,
    ) -> None:
        self.app = app
        self.public = frozenset(public)
        self.record = record
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        settings: HoistSettings = scope["app"].state.settings
        headers = Headers(scope=scope)
        if self._protected(_route_path(scope)):
            credentials = auth.bearer_credentials(headers.get("authorization"))
            response = await auth.decide(scope, credentials)
            if response is not None:
                await self._refuse(scope, send, response, started)
                return
            scope[auth.ADMITTED] = True
        limit = settings.http.max_body_bytes
        declared = _content_length(headers)
        if declared is not None and declared > limit:
            await self._refuse(scope, send, _too_large(limit), started)
            return

        received = 0
        answering = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal answering
            answering = answering or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except Exception as exc:
            if answering or not _only_too_large(exc):
                raise
            await self._refuse(scope, send, _too_large(limit), started)

    def _protected(self, path: str) -> bool:
        under = path == self.prefix or path.startswith(self.prefix + "/")
        return under and path not in self.public

    async def _refuse(
        self, scope: Scope, send: Send, response: JSONResponse, started: float
    ) -> None:
        request_id = Headers(scope=scope).get("x-request-id") or uuid.uuid4().hex
        response.headers["x-request-id"] = request_id
        await response(scope, _no_receive, send)
        if self.record is not None:
            self.record(scope, response.status_code, time.monotonic() - started, request_id)


def _too_large(limit: int) -> JSONResponse:
    exc = BodyTooLarge(limit)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)


def _only_too_large(exc: BaseException) -> bool:
    """``BodyTooLarge``, alone or in the exception group of a task group that read the body
    (``BaseHTTPMiddleware`` reads in one)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_too_large(e) for e in exc.exceptions)
    return isinstance(exc, BodyTooLarge)


def _route_path(scope: Scope) -> str:
    """The path the routes see: without the root path a proxy may have left in it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path


def _content_length(headers: Headers) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None  # none, or malformed: the server refuses that one itself


async def _no_receive() -> Message:
    raise AssertionError("a refusal never reads the request")
