"""The error bodies every service sends, typed once, and the ``responses`` a route declares.

Why here: the OpenAPI documents said almost nothing (issue 24): 401, 404, 409, 413 and 503
were undocumented, so a client generated from them, or a fuzzer checking answers against
them, saw statuses and bodies no document mentioned. Every error a service answers is
written by ``shared.service.errors`` (an ``ApiError``, request validation), by the token
and size gate (``shared.service.limits``) or by the NUL refusal of the app: all of them
``{"detail": ...}``, which ``ErrorBody`` describes. ``Message`` and ``Problems`` are its two
forms, so each status documents the one it really sends.

A route lists the errors it answers with ``errors(404, 409)``; the app adds those of every
protected route itself (``PROTECTED``: 401, 403, 422, 503; ``WITH_BODY``: 413).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ERRORS",
    "PROTECTED",
    "WITH_BODY",
    "Answer",
    "ErrorBody",
    "Message",
    "Problems",
    "RequestProblem",
    "errors",
]


class Answer(BaseModel):
    """A success body as a route documents it. Routes send what they build as it is, so the
    model only describes it; unknown keys are allowed (a newer answer, an older client)."""

    model_config = ConfigDict(extra="allow")


class RequestProblem(BaseModel):
    """One problem of a request; a failed connection test adds the server's
    ``certificate`` to the first."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int] = Field(description="Where: body, path, query or header, then names.")
    type: str = Field(description="What kind of problem (value_error, conflict, missing...).")
    msg: str


class ErrorBody(BaseModel):
    """Every error answer of every service: a message, or the problems of the request."""

    model_config = ConfigDict(extra="allow")

    detail: str | list[RequestProblem]


class Message(ErrorBody):
    detail: str


class Problems(ErrorBody):
    detail: list[RequestProblem]


#: Each error status as the services answer it: the body's form and when it is sent.
ERRORS: dict[int, dict[str, Any]] = {
    400: {"model": Problems, "description": "A query parameter this API cannot use"},
    401: {
        "model": Message,
        "description": "No bearer token, or not a valid one",
        "headers": {
            "WWW-Authenticate": {
                "description": 'Bearer realm="hoist"',
                "schema": {"type": "string"},
            }
        },
    },
    403: {
        "model": Message,
        "description": "The token's identity may not do this (Kubernetes RBAC on hoist.io "
        "resources): the detail names the user, verb, resource and the role that grants it",
    },
    404: {"model": Message, "description": "No such object"},
    409: {"model": Problems, "description": "The current state forbids it"},
    412: {"model": Message, "description": "If-Match names another revision: read it again"},
    413: {
        "model": Message,
        "description": "The body is larger than HOIST_HTTP_MAX_BODY_BYTES (refused unread)",
    },
    422: {
        "model": Problems,
        "description": "Input wrong in itself: loc names the field (a NUL character in the "
        "path, query or body included)",
    },
    503: {
        "model": Message,
        "description": "Temporary: the service is starting or a dependency cannot be reached; "
        "retry after Retry-After seconds",
        "headers": {"Retry-After": {"description": "Whole seconds", "schema": {"type": "string"}}},
    },
}

#: What every route under ``/api/v1`` (but the public docs) may answer, whatever it does.
PROTECTED = (401, 403, 422, 503)
#: What a route that reads a body may answer besides.
WITH_BODY = (413,)


def errors(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of the errors ``codes``; ``descriptions`` (``e404="No such plan"``)
    say what one means for this route."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry = dict(ERRORS[code])
        if f"e{code}" in descriptions:
            entry["description"] = descriptions[f"e{code}"]
        out[code] = entry
    return out
