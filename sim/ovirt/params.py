"""Query parameters the engine reads as numbers (``max``, ``from``), checked as it checks them.

A real engine answers a malformed number with 400 and a fault document; parsing it with a
bare ``int()`` made the simulator answer 500 in plain text, which no oVirt client expects.
Handlers raise ``BadParameter``; the application's exception handler turns it into the fault.
"""

from __future__ import annotations

from typing import TypeVar

from starlette.requests import Request

T = TypeVar("T")


class BadParameter(Exception):
    """A query parameter's value the engine refuses: answered 400 with a fault."""

    def __init__(self, name: str, value: str) -> None:
        super().__init__(f"Value '{value}' of parameter '{name}' is not a valid integer number")
        self.name = name
        self.value = value


def non_negative(request: Request, name: str) -> int | None:
    """The parameter as a non-negative integer, None when absent; raises ``BadParameter``."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    value = raw.strip()
    if not value.isascii() or not value.isdigit():
        raise BadParameter(name, raw)
    return int(value)


def limit(request: Request, items: list[T]) -> list[T]:
    """The first ``max=`` items (all of them without ``max``)."""
    count = non_negative(request, "max")
    return items if count is None else items[:count]
