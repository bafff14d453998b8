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

from sqlalchemy import ColumnElement, any_, func, literal, literal_column, select, tuple_
from sqlalchemy.dialects.postgresql import JSONB
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
# What a cursor's sort value may be, per sort key: the type of its column and, for the
# integers, the range PostgreSQL holds (bigint revision, smallint concern level). A cursor
# outside these is not one this API returned; PostgreSQL would fail on it.
_TEXT_KEYS = {"name", "status"}
_INT_RANGES = {"revision": (-(2**63), 2**63 - 1), "concerns": (-(2**15), 2**15 - 1)}
_NOT_A_CURSOR = "not a cursor this API returned"


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


def decode_cursor(cursor: str, sort_key: str) -> list[Any]:
    """The sort value and id a cursor holds, checked against ``sort_key`` (a sort without
    its ``-``): a text value and id for name and status, an integer in its column's range
    for revision and concerns. Anything else is a ``BadQuery`` (400)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError):
        raise BadQuery("cursor", _NOT_A_CURSOR) from None
    if not isinstance(values, list) or len(values) != 2:
        raise BadQuery("cursor", _NOT_A_CURSOR)
    value, oid = values
    if sort_key in _TEXT_KEYS:
        good = _is_text(value)
    else:
        low, high = _INT_RANGES[sort_key]
        good = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if not (good and _is_text(oid)):
        raise BadQuery("cursor", _NOT_A_CURSOR)
    return values


def _is_text(value: Any) -> bool:
    """A string PostgreSQL can compare: no NUL, and encodable (no lone surrogate)."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


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
    sort_key = q.sort.lstrip("-")
    column = _SORT_COLUMNS[sort_key]
    descending = q.sort.startswith("-")
    conditions = list(where)
    if q.cursor:
        last_value, last_id = decode_cursor(q.cursor, sort_key)
        # A row-value comparison, not an OR of two: PostgreSQL walks the listing index
        # straight to the position instead of sorting the whole collection. The values are
        # bound as their columns' types (a revision above 2^31 is no int4).
        key = tuple_(column, o.c.id)
        after = tuple_(literal(last_value, column.type), literal(last_id, o.c.id.type))
        conditions.append(key < after if descending else key > after)
    order = [column.desc(), o.c.id.desc()] if descending else [column.asc(), o.c.id.asc()]
    columns: list[ColumnElement[Any]] = [
        o.c.id,
        o.c.kind,
        o.c.name,
        o.c.status,
        o.c.parent,
        o.c.revision,
        o.c.concerns,
        o.c.concern_level,
    ]
    if q.detail >= 2:
        columns.append(o.c.data)
    elif q.detail == 1:
        # Without ``raw`` (the source's own document, most of the bytes), dropped by
        # PostgreSQL rather than decoded here to be thrown away: a page of 1,000 VMs for a
        # plan's validation read megabytes of JSON it never showed.
        columns.append(o.c.data.op("-", return_type=JSONB)(literal_column("'raw'")).label("data"))
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
