"""The simulated services' error: raised by any route, rendered by ``api._error`` in the
service's own shape (``itemNotFound``/``badRequest``/``overLimit``... or ``NeutronError``).
Apart from ``api.py`` so the route modules beside it can raise it without importing it."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, "itemNotFound", f"{what} {ident} could not be found.")
