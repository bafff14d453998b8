"""Errors as the API server reports them: a `kind: Status` object with an HTTP code.

Every refusal in the simulator goes through `ApiError` so clients see exactly the reason,
code and details a real kube-apiserver would send (kubernetes_asyncio maps them to
`ApiException.status`; kubectl prints `message`).
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A refused request; `status()` is the body the API server answers with."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.retry_after = retry_after

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(kind: str, name: str | None, group: str) -> dict[str, Any]:
    details: dict[str, Any] = {"kind": kind}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    return details


def resource_label(plural: str, group: str) -> str:
    """How the API server names a resource in messages: `pods`, `storageclasses.storage.k8s.io`."""
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{resource_label(plural, group)} "{name}" not found',
        details=_details(plural, name, group),
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{resource_label(plural, group)} "{name}" already exists',
        details=_details(plural, name, group),
    )


def conflict(plural: str, group: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {resource_label(plural, group)} "{name}": {why}',
        details=_details(plural, name, group),
    )


def invalid(kind: str, group: str, name: str, causes: list[dict[str, str]]) -> ApiError:
    """422 with one cause per field, the way `kubectl apply` prints them."""
    summary = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
    details = _details(kind, name, group)
    details["causes"] = [
        {
            "reason": c.get("reason", "FieldValueInvalid"),
            "message": c["message"],
            "field": c["field"],
        }
        for c in causes
    ]
    return ApiError(
        422,
        "Invalid",
        f'{kind}{"." + group if group else ""} "{name}" is invalid: {summary}',
        details=details,
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "Forbidden", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def cause(field: str, message: str, reason: str = "FieldValueInvalid") -> dict[str, str]:
    return {"field": field, "message": message, "reason": reason}
