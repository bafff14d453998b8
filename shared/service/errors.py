"""What can go wrong with a request, and the one HTTP answer each has in every service.

Why here: each service translated its own exceptions in a ``_guarded`` wrapper around every
route, with the same bodies spelled four times. A route (or the code it calls) now raises an
``ApiError`` and the handler ``install()``s answers it; the bodies are those the services
have always sent, byte for byte:

- ``Invalid`` (422): ``[{"loc", "type", "msg"}]``, one entry per problem of the input; a
  failed connection test adds the server's ``certificate`` to the first;
- ``NotStartable`` (422): ``{"message", "problems"}``, a start that validation refused;
- ``NotFound`` (404), ``PreconditionFailed`` (412): the message;
- ``Conflict`` (409): ``[{"loc", "type": "conflict", "msg"}]``;
- ``BadQuery`` (400): ``[{"loc": ["query", param], "type": "value_error", "msg"}]``; a
  subclass may answer another status (the planner's cursor is a 422);
- ``Unavailable`` (503, ``Retry-After``: whole seconds): temporary; it is a ``RetryLater``,
  so code outside a request treats it as one.

Every body is ``{"detail": ...}``, as FastAPI's own ``HTTPException`` answers. Three more
handlers complete the set: request validation (422, without echoing the bad value back; a
body that cannot even be decoded too, where FastAPI answers an undocumented 400)
and anything unexpected (500, logged with its traceback; the body carries only the
request id to quote).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from shared.errors import HoistError, RetryLater

if TYPE_CHECKING:
    from shared.tls import CertificateInfo

__all__ = [
    "ApiError",
    "BadQuery",
    "Conflict",
    "Invalid",
    "Loc",
    "NotFound",
    "NotStartable",
    "PreconditionFailed",
    "Problem",
    "Unavailable",
    "install",
]

log = logging.getLogger("hoist.http")

Loc = list[str | int]
#: One problem of a request: where (``loc``), what kind (``type``), and a message.
Problem = tuple[Loc, str, str]


class ApiError(HoistError):
    """An error with an HTTP answer: ``status``, ``headers`` and the ``detail`` body."""

    status: ClassVar[int] = 500

    @property
    def headers(self) -> dict[str, str]:
        return {}

    def detail(self) -> Any:
        """The JSON value of the body's ``detail``."""
        return self.message


class Invalid(ApiError):
    """The input itself is wrong (every problem at once); nothing was changed."""

    status = 422

    def __init__(
        self, problems: Sequence[Problem], *, certificate: CertificateInfo | None = None
    ) -> None:
        super().__init__("; ".join(m for _, _, m in problems))
        self.problems = list(problems)
        self.certificate = certificate

    def detail(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = [
            {"loc": loc, "type": t, "msg": msg} for loc, t, msg in self.problems
        ]
        if self.certificate is not None and entries:
            entries[0]["certificate"] = self.certificate.as_dict()
        return entries


class NotStartable(ApiError):
    """A start that validation refused; ``problems`` are the stored validation problems."""

    status = 422

    def __init__(self, message: str, problems: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.problems = problems

    def detail(self) -> dict[str, Any]:
        return {"message": self.message, "problems": self.problems}


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    """The request contradicts the current state (a name taken, a plan running)."""

    status = 409

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc

    def detail(self) -> list[dict[str, Any]]:
        return [{"loc": self.loc, "type": "conflict", "msg": self.message}]


class PreconditionFailed(ApiError):
    """``If-Match`` names another revision: read again, then retry."""

    status = 412


class BadQuery(ApiError):
    """A query parameter this API cannot use (a bad sort, filter or cursor)."""

    status = 400

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param

    def detail(self) -> list[dict[str, Any]]:
        return [{"loc": ["query", self.param], "type": "value_error", "msg": self.message}]


class Unavailable(ApiError, RetryLater):
    """Temporary: something the request needs cannot be reached now; retry after ``delay``
    seconds (``Retry-After``, rounded up to whole seconds)."""

    status = 503

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(math.ceil(self.delay))}


async def _answer(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    # FastAPI's HTTPException answer: the same JSONResponse, so the same bytes.
    return JSONResponse({"detail": exc.detail()}, status_code=exc.status, headers=exc.headers)


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    # FastAPI's default echoes each bad value back ("input"): a mistyped password would be
    # returned in the response and land in proxies' logs. Location and reason are enough.
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    return JSONResponse({"detail": errors}, status_code=422)


#: What FastAPI answers (400) a body it could not decode: not UTF-8, or not even text.
_UNREADABLE_BODY = "There was an error parsing the body"


async def _http_exception(request: Request, exc: Exception) -> Response:
    """FastAPI's answer, but a body that cannot be decoded is a 422 at ``body`` as one
    that is not JSON is (FastAPI's 400 for it was a status no route documents)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and exc.detail == _UNREADABLE_BODY:
        problem = {"loc": ["body"], "type": "json_invalid", "msg": "the body is not UTF-8 JSON"}
        return JSONResponse({"detail": [problem]}, status_code=422)
    return await http_exception_handler(request, exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    request_id = getattr(request.state, "request_id", "")
    log.error("unhandled error", exc_info=exc)
    return JSONResponse(
        {
            "detail": "internal error; quote this request id when reporting it",
            "request_id": request_id,
        },
        status_code=500,
    )


def install(app: FastAPI) -> None:
    """Answer ``ApiError``s, invalid requests and unexpected errors (the app factory calls
    this for every service)."""
    app.add_exception_handler(ApiError, _answer)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(Exception, _unexpected)
