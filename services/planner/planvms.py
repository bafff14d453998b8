"""A plan's VMs as its answers show them: the first ``VMS_SHOWN`` inline, the rest in pages.

A plan keeps the VMs it was given (or its selector chose) as one JSONB array, ``plans.vms``,
in the order given: it is written whole when the plan is created, changed or validated (a
validation fills in names), and read whole only to validate or start the plan. An answer
(``GET``, a list, the answer of a change) shows the first ``VMS_SHOWN`` and ``vmCount``;
``GET /api/v1/plans/{plan}/definition/vms`` pages through the rest. PostgreSQL slices the
array (``jsonb_path_query_array``), so reading a plan of 10,000 VMs decodes, serializes and
hashes (its ETag) what one of 100 VMs does.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.planner import db
from services.planner.db import PlanRow, plan_row
from services.planner.errors import BadCursor, NotFound
from shared.ids import is_uuid

#: The VMs a plan's answer lists; the rest are a ``vmsNext`` away.
VMS_SHOWN = 100


def vms_slice(column: Any, offset: int, limit: int) -> Any:
    """``column[offset : offset + limit]`` of a JSONB array (empty past its end)."""
    path = f"'$[{int(offset)} to {int(offset) + int(limit) - 1}]'::jsonpath"  # ints only
    return sa.func.jsonb_path_query_array(column, sa.literal_column(path))


#: ``plans`` as an answer reads it: the first ``VMS_SHOWN`` VMs, and their count.
SHOWN: tuple[Any, ...] = (
    *(c for c in db.plans.c if c.name != "vms"),
    vms_slice(db.plans.c.vms, 0, VMS_SHOWN).label("vms"),
    sa.func.jsonb_array_length(db.plans.c.vms).label("vm_count"),
)


def encode_cursor(offset: int) -> str:
    """The cursor of the page that starts at ``offset`` (the position in ``vms``)."""
    return str(offset)


def decode_cursor(cursor: str) -> int:
    if not cursor.isdigit() or len(cursor) > 9 or encode_cursor(int(cursor)) != cursor:
        raise BadCursor("not a cursor of this list; use the 'vmsNext' or 'next' of a page")
    return int(cursor)


async def page(conn: AsyncConnection, ref: str, cursor: str | None, limit: int) -> dict[str, Any]:
    """``{items, next, total}``: the plan's VMs from ``cursor`` (the start if None), as
    given (``[{id, name?, targetName?, ...}]``), at most ``limit``."""
    offset = decode_cursor(cursor) if cursor is not None else 0
    p = db.plans
    column = p.c.id if is_uuid(ref) else p.c.name
    row = (
        await conn.execute(
            select(
                vms_slice(p.c.vms, offset, limit).label("items"),
                sa.func.jsonb_array_length(p.c.vms).label("total"),
            ).where(column == ref)
        )
    ).first()
    if row is None:
        raise NotFound(f"no plan {ref!r}")
    total = int(row.total)
    more = offset + limit < total
    return {
        "items": row.items,
        "next": encode_cursor(offset + limit) if more else None,
        "total": total,
    }


async def find(conn: AsyncConnection, ref: str) -> tuple[PlanRow, int]:
    """A plan by id or name as an answer shows it: the row with its first ``VMS_SHOWN``
    VMs, and how many it has."""
    p = db.plans
    column = p.c.id if is_uuid(ref) else p.c.name
    row = (await conn.execute(select(*SHOWN).where(column == ref))).mappings().first()
    if row is None:
        raise NotFound(f"no plan {ref!r}")
    return shown(row)


def shown(row: Any) -> tuple[PlanRow, int]:
    """A row read with ``SHOWN``: the plan (its first VMs) and its VM count."""
    values = dict(row)
    count = int(values.pop("vm_count"))
    return plan_row(values), count
