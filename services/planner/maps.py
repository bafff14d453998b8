"""Network and storage maps: reusable by many plans, validated against the inventory.

A map is written whole or not at all. Its providers must exist (else 422: a map needs them
to mean anything); what its entries name is checked against the inventory and reported as
``problems`` with the map, not refused: the inventory changes (a storage class created a
minute later fixes the map), and plans validate their maps again anyway. A map in use by a
plan cannot be deleted (409), and its providers cannot change (plans rely on them).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.planner import db, mapping, shaping
from services.planner.errors import Conflict, Invalid, NotFound, PreconditionFailed
from services.planner.inventoryclient import InventoryClient, Obj
from services.planner.model import (
    MapCreate,
    NetworkMapCreate,
    NetworkMapUpdate,
    StorageMapCreate,
    StorageMapUpdate,
)
from shared.ids import is_uuid
from shared.payloads import ProviderType

TABLES: dict[str, Table] = {"network": db.network_maps, "storage": db.storage_maps}
SOURCE_TYPES = shaping.SOURCE_TYPES


async def provider(
    inv: InventoryClient, ref: str, loc: str, types: tuple[ProviderType, ...]
) -> Obj:
    """A provider of one of ``types`` by id or name, or ``Invalid`` naming the field."""
    p = await inv.provider(ref)
    if p is None:
        raise Invalid([([loc], "not_found", f"no provider {ref!r} in the inventory")])
    if p["type"] not in [t.value for t in types]:
        allowed = " or ".join(t.value for t in types)
        raise Invalid([([loc], "type", f"provider {p['name']!r} is {p['type']}, not {allowed}")])
    return p


async def find(conn: AsyncConnection, kind: str, ref: str) -> Any:
    t = TABLES[kind]
    column = t.c.id if is_uuid(ref) else t.c.name
    row = (await conn.execute(select(t).where(column == ref))).mappings().first()
    if row is None:
        raise NotFound(f"no {kind} map {ref!r}")
    return row


def public(kind: str, row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": kind,
        "name": row["name"],
        "description": row["description"],
        "sourceProvider": row["source_provider"],
        "targetProvider": row["target_provider"],
        "entries": row["entries"],
        "problems": row["problems"],
        "revision": row["revision"],
        "createdAt": row["created_at"].isoformat(),
        "updatedAt": row["updated_at"].isoformat(),
    }


def _entries(body: NetworkMapCreate | StorageMapCreate | Any) -> list[dict[str, Any]]:
    return [e.model_dump(by_alias=True, exclude_none=True) for e in body.entries]


async def _problems(
    inv: InventoryClient, kind: str, source: Obj, target: Obj, entries: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    found = await mapping.validate_map(inv, kind, source, target, entries)
    return [p.as_dict() for p in found]


async def create(engine: AsyncEngine, inv: InventoryClient, kind: str, body: MapCreate) -> Any:
    source = await provider(inv, body.source_provider, "sourceProvider", SOURCE_TYPES)
    target = await provider(inv, body.target_provider, "targetProvider", (ProviderType.KUBEVIRT,))
    entries = _entries(body)
    problems = await _problems(inv, kind, source, target, entries)
    t = TABLES[kind]
    try:
        async with engine.begin() as conn:
            row = (
                (
                    await conn.execute(
                        insert(t)
                        .values(
                            id=str(uuid.uuid4()),
                            name=body.name,
                            description=body.description,
                            source_provider=source["id"],
                            target_provider=target["id"],
                            entries=entries,
                            problems=problems,
                            revision=db.revision_seq.next_value(),
                        )
                        .returning(t)
                    )
                )
                .mappings()
                .one()
            )
    except IntegrityError:
        raise Conflict(["body", "name"], f"a {kind} map named {body.name!r} exists") from None
    return row


async def update(
    engine: AsyncEngine,
    inv: InventoryClient,
    kind: str,
    ref: str,
    body: NetworkMapUpdate | StorageMapUpdate,
    if_match: int | None,
) -> Any:
    async with engine.connect() as conn:
        current = await find(conn, kind, ref)
    source = await provider(inv, current["source_provider"], "sourceProvider", SOURCE_TYPES)
    target = await provider(
        inv, current["target_provider"], "targetProvider", (ProviderType.KUBEVIRT,)
    )
    values: dict[str, Any] = {}
    if body.description is not None:
        values["description"] = body.description
    entries = _entries(body) if body.entries is not None else current["entries"]
    values["entries"] = entries
    values["problems"] = await _problems(inv, kind, source, target, entries)
    t = TABLES[kind]
    async with engine.begin() as conn:
        row = (
            (await conn.execute(select(t).where(t.c.id == current["id"]).with_for_update()))
            .mappings()
            .first()
        )
        if row is None:
            raise NotFound(f"no {kind} map {ref!r}")
        expected = if_match if if_match is not None else current["revision"]
        if row["revision"] != expected:
            raise PreconditionFailed(
                f"the map changed (revision {row['revision']}, not {expected}); read it again"
            )
        return (await conn.execute(db.revised(t, row["id"], values))).mappings().one()


async def remove(engine: AsyncEngine, kind: str, ref: str) -> None:
    t = TABLES[kind]
    column = db.plans.c.network_map if kind == "network" else db.plans.c.storage_map
    async with engine.begin() as conn:
        row = await find(conn, kind, ref)
        users = (
            (
                await conn.execute(
                    select(db.plans.c.name).where(column == row["id"]).order_by(db.plans.c.name)
                )
            )
            .scalars()
            .all()
        )
        if users:
            raise Conflict(
                ["path", "map"],
                f"the map is used by plans {', '.join(users[:10])}"
                f"{' and more' if len(users) > 10 else ''}; change or delete them first",
            )
        await conn.execute(delete(t).where(t.c.id == row["id"]))


async def listing(conn: AsyncConnection, kind: str, provider_id: str | None = None) -> list[Any]:
    t = TABLES[kind]
    q = select(t).order_by(t.c.name)
    if provider_id is not None:
        q = q.where((t.c.source_provider == provider_id) | (t.c.target_provider == provider_id))
    return list((await conn.execute(q)).mappings().all())
