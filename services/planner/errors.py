"""What can go wrong with a request to the planner, and the HTTP answer each one gets.

The classes are the shared API errors (``shared.service.errors``), answered by the handlers
every service's app installs, so a route raises and never translates. The planner's
meanings:

- ``Invalid`` (422): the input itself is wrong (a provider that does not exist, a map of
  other providers); nothing was changed. Problems *found by validation* (a VM locked, a
  class missing) are not errors: they are stored with the plan and shown.
- ``NotFound`` (404), ``Conflict`` (409: a name taken, a plan running, a map in use),
  ``PreconditionFailed`` (412: ``If-Match`` names an older revision; read, then retry).
- ``NotStartable`` (422 with the validation problems): a start that validation refused.
- ``BadCursor`` (422, ``loc`` ``["query", "cursor"]``): a page cursor this API did not hand out.
- ``InventoryUnavailable`` (503, temporary: retry after ``Retry-After`` seconds).
"""

from __future__ import annotations

from services.planner.inventoryclient import InventoryUnavailable
from shared.service.errors import (
    BadQuery,
    Conflict,
    Invalid,
    Loc,
    NotFound,
    NotStartable,
    PreconditionFailed,
    Problem,
)

__all__ = [
    "BadCursor",
    "Conflict",
    "Invalid",
    "InventoryUnavailable",
    "Loc",
    "NotFound",
    "NotStartable",
    "PreconditionFailed",
    "Problem",
]


class BadCursor(BadQuery):
    """A page cursor this API did not hand out. A 422 (not the shared 400) as the planner's
    other bad parameters are: FastAPI's own validation answers them."""

    status = 422

    def __init__(self, message: str) -> None:
        super().__init__("cursor", message)
