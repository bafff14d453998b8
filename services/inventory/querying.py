"""Reading the inventory: filtered, sorted, cursor-paginated pages and single objects.

Why keyset cursors rather than offsets: a page deep into 10,000 VMs costs the same as the
first (the listing index leads straight to it), and objects created or removed between two
pages neither repeat nor vanish from the walk. A cursor is opaque to clients: the sort key
and id of the last row, base64url-encoded JSON.

Detail levels: 0 is what a table needs (id, name, status, parent, revision, concern summary);
1 adds the normalized fields and concerns; 2 adds the raw detail the source gave.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, any_, func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from services.inventory import db
from services.inventory.items import CATEGORY_RANK, Category
from shared.service.errors import BadQuery as BadQuery  # raised here; callers catch it by this name

_SORT_COLUMNS = {
    "name": db.objects.c.name,
    "status": db.objects.c.status,
    "revision": db.objects.c.revision,
    "concerns": db.objects.c.concern_level,
}


@dataclass(frozen=True)
class Query:
    name: str | None = None
    search: str | None = None
    status: str | None = None
    parent: str | None = None
    concern: Category | None = None
    sort: str = "name"
    limit: int = 100
    cursor: str | None = None
    detail: int = 0

    def fingerprint(self) -> str:
        """What distinguishes two listings for their ETag (the cursor included)."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError):
        raise BadQuery("cursor", "not a cursor this API returned") from None
    if not isinstance(values, list) or len(values) != 2:
        raise BadQuery("cursor", "not a cursor this API returned")
    return values


def view(row: Any, detail: int) -> dict[str, Any]:
    concerns = row["concerns"]
    out: dict[str, Any] = {
        "id": row["id"],
        "kind": row["kind"],
        "name": row["name"],
        "status": row["status"],
        "parent": row["parent"] or None,
        "revision": row["revision"],
        "concernCount": len(concerns),
        "concernLevel": _level_name(row["concern_level"]),
    }
    if detail >= 1:
        data = dict(row["data"])
        raw = data.pop("raw", None)
        out["data"] = data
        out["concerns"] = concerns
        if detail >= 2 and raw is not None:
            out["raw"] = raw
    return out


def _level_name(level: int) -> str | None:
    for category, rank in CATEGORY_RANK.items():
        if rank == level:
            return category.value
    return None


async def page(
    conn: AsyncConnection, provider_id: str, kind: str, q: Query
) -> tuple[list[dict[str, Any]], str | None, int]:
    """One page, the cursor of the next (None at the end), and the filtered total."""
    o = db.objects
    where: list[ColumnElement[bool]] = [
        o.c.provider_id == provider_id,
        o.c.kind == kind,
        ~o.c.deleted,
    ]
    if q.name is not None:
        where.append(o.c.name == q.name)
    if q.search:
        escaped = q.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(o.c.name.ilike(f"%{escaped}%", escape="\\"))
    if q.status is not None:
        where.append(func.lower(o.c.status) == q.status.lower())
    if q.parent is not None:
        where.append(o.c.parent == q.parent)
    if q.concern is not None:
        where.append(literal(q.concern.value) == any_(o.c.concern_categories))
    column = _SORT_COLUMNS[q.sort.lstrip("-")]
    descending = q.sort.startswith("-")
    conditions = list(where)
    if q.cursor:
        last_value, last_id = decode_cursor(q.cursor)
        # A row-value comparison, not an OR of two: PostgreSQL walks the listing index
        # straight to the position instead of sorting the whole collection.
        key, after = tuple_(column, o.c.id), tuple_(literal(last_value), literal(last_id))
        conditions.append(key < after if descending else key > after)
    order = [column.desc(), o.c.id.desc()] if descending else [column.asc(), o.c.id.asc()]
    columns = [
        o.c.id,
        o.c.kind,
        o.c.name,
        o.c.status,
        o.c.parent,
        o.c.revision,
        o.c.concerns,
        o.c.concern_level,
    ]
    if q.detail >= 1:
        columns.append(o.c.data)
    rows = (
        (
            await conn.execute(
                select(*columns).where(*conditions).order_by(*order).limit(q.limit + 1)
            )
        )
        .mappings()
        .all()
    )
    total = await conn.scalar(select(func.count()).select_from(o).where(*where)) or 0
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    sort_key = q.sort.lstrip("-")
    key_of = {"concerns": "concern_level"}.get(sort_key, sort_key)
    next_cursor = encode_cursor([rows[-1][key_of], rows[-1]["id"]]) if more and rows else None
    return [view(r, q.detail) for r in rows], next_cursor, total


async def collection_revision(conn: AsyncConnection, provider_id: str, kind: str) -> int:
    """The newest revision in a collection (tombstones included, so deletes count)."""
    o = db.objects
    return (
        await conn.scalar(
            select(func.max(o.c.revision)).where(o.c.provider_id == provider_id, o.c.kind == kind)
        )
        or 0
    )


async def one(conn: AsyncConnection, provider_id: str, kind: str, oid: str) -> Any | None:
    o = db.objects
    return (
        (
            await conn.execute(
                select(o).where(
                    o.c.provider_id == provider_id,
                    o.c.kind == kind,
                    o.c.id == oid,
                    ~o.c.deleted,
                )
            )
        )
        .mappings()
        .first()
    )
