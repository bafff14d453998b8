"""What can go wrong with a request to the planner, and the HTTP answer each one gets.

- ``Invalid`` (422): the input itself is wrong (a provider that does not exist, a map of
  other providers); nothing was changed. Problems *found by validation* (a VM locked, a
  class missing) are not errors: they are stored with the plan and shown.
- ``NotFound`` (404), ``Conflict`` (409: a name taken, a plan running, a map in use),
  ``PreconditionFailed`` (412: ``If-Match`` names an older revision; read, then retry).
- ``NotStartable`` (422 with the validation problems): a start that validation refused.
- ``InventoryUnavailable`` (503, temporary: retry after ``Retry-After`` seconds).
"""

from __future__ import annotations

from typing import Any

from services.planner.inventoryclient import InventoryUnavailable

__all__ = [
    "Conflict",
    "Invalid",
    "InventoryUnavailable",
    "NotFound",
    "NotStartable",
    "PreconditionFailed",
]

Loc = list[str | int]


class Invalid(Exception):
    def __init__(self, problems: list[tuple[Loc, str, str]]) -> None:
        super().__init__("; ".join(m for _, _, m in problems))
        self.problems = problems


class NotFound(Exception):
    pass


class Conflict(Exception):
    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc


class PreconditionFailed(Exception):
    pass


class NotStartable(Exception):
    def __init__(self, message: str, problems: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.problems = problems
