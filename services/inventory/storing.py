"""Turning collected batches into stored revisions, concerns and events.

Why content digests: a collector cannot always tell what changed (a full load, a
relist-and-compare, an event that touches a VM without saying how), so it sends what it has
and the store compares each object's digest with the stored one. Only real changes get a new
revision and an event; a service restart's full reload of 10,000 unchanged VMs writes
nothing and announces nothing.

One transaction per batch: the objects, the tombstones and the outbox rows commit together,
so a crash leaves either the old inventory with no events or the new one with all of them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import bindparam, func, literal_column, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from services.inventory import db
from services.inventory.items import CATEGORY_RANK, KINDS_BY_TYPE, Batch, Concern, Item
from shared import catalog
from shared.db.messaging import Outbox
from shared.payloads import ChangeAction, InventoryObjectChanged, ProviderType

CHUNK = 1000  # rows per INSERT: 14 parameters each stays far below PostgreSQL's 32,767
T = TypeVar("T")
Assess = Callable[[Item], list[Concern]]


class ProviderGone(Exception):
    """The provider was deleted while its batch was collected; nothing was stored."""


@dataclass
class Applied:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0

    @property
    def changed(self) -> int:
        return self.created + self.updated + self.deleted


@dataclass(frozen=True)
class _Row:
    item: Item
    concerns: list[dict[str, str]]
    level: int
    categories: list[str]
    digest: str


def _prepare(item: Item, assess: Assess) -> _Row:
    found = assess(item) if item.kind == "vm" else []
    concerns = [c.as_dict() for c in found]
    categories = sorted({c.category.value for c in found})
    level = max((CATEGORY_RANK[c.category] for c in found), default=0)
    digest = hashlib.sha256(
        (item.digest() + json.dumps(concerns, sort_keys=True)).encode()
    ).hexdigest()
    return _Row(item, concerns, level, categories, digest)


class Store:
    def __init__(self, engine: AsyncEngine, outbox: Outbox) -> None:
        self.engine = engine
        self.outbox = outbox

    async def apply(
        self,
        provider_id: str,
        provider_type: ProviderType,
        batch: Batch,
        assess: Assess,
        *,
        announce: bool,
    ) -> Applied:
        """Store one batch; with ``announce``, queue an event per changed object.

        A provider's first load is not announced object by object (10,000 events nobody
        asked for); its status event says the inventory is ready.
        """
        rows = {r.item.key: r for r in (_prepare(i, assess) for i in batch.items)}
        allowed = set(KINDS_BY_TYPE[provider_type])
        stray = {k for k, _ in rows} - allowed
        if stray:
            raise ValueError(
                f"{ProviderType(provider_type).phrase('source')} produced kinds {sorted(stray)}"
            )
        result = Applied()
        async with self.engine.begin() as conn:
            # The provider's row lock: a delete takes it too, so a batch is stored either
            # before the provider goes (and deleted with it) or not at all, never as orphans.
            alive = await conn.scalar(
                select(db.providers.c.id)
                .where(db.providers.c.id == provider_id)
                .with_for_update(key_share=True)  # FOR NO KEY UPDATE: batches in turn
            )
            if alive is None:
                raise ProviderGone(provider_id)
            known = await self._digests(conn, provider_id, batch, list(rows))
            changed = [r for key, r in rows.items() if known.get(key) != r.digest]
            result.unchanged = len(rows) - len(changed)
            gone = {k for k in batch.deleted if k in known and k not in rows}
            for key, digest in known.items():
                if key[0] in batch.complete and key not in rows and digest is not None:
                    gone.add(key)
            events: list[InventoryObjectChanged] = []
            for chunk in _chunks(changed, CHUNK):
                for kind, oid, name, revision, inserted in await self._upsert(
                    conn, provider_id, chunk
                ):
                    created = inserted or known.get((kind, oid)) is None
                    result.created += created
                    result.updated += not created
                    action = ChangeAction.CREATED if created else ChangeAction.UPDATED
                    events.append(_event(provider_id, kind, oid, name, action, revision))
            for kind, oid, name, revision in await self._tombstone(conn, provider_id, gone):
                result.deleted += 1
                events.append(_event(provider_id, kind, oid, name, ChangeAction.DELETED, revision))
            if result.changed:
                await self._recount(conn, provider_id)
            if announce and events:
                await self._announce(conn, events)
        if announce and events:
            self.outbox.wake()  # after the commit, or the relay finds nothing yet
        return result

    async def _digests(
        self,
        conn: AsyncConnection,
        provider_id: str,
        batch: Batch,
        keys: Sequence[tuple[str, str]],
    ) -> dict[tuple[str, str], str | None]:
        """Stored digests of what the batch touches; None marks a tombstone."""
        o = db.objects
        found: dict[tuple[str, str], str | None] = {}
        base = select(o.c.kind, o.c.id, o.c.digest, o.c.deleted).where(
            o.c.provider_id == provider_id
        )
        queries = []
        if batch.complete:
            queries.append(base.where(o.c.kind.in_(sorted(batch.complete))))
        rest = [k for k in (*keys, *batch.deleted) if k[0] not in batch.complete]
        for chunk in _chunks(rest, CHUNK):
            queries.append(base.where(tuple_(o.c.kind, o.c.id).in_(chunk)))
        for query in queries:
            for kind, oid, digest, deleted in (await conn.execute(query)).all():
                found[(kind, oid)] = None if deleted else digest
        return found

    async def _upsert(
        self, conn: AsyncConnection, provider_id: str, rows: Sequence[_Row]
    ) -> Sequence[Any]:
        o = db.objects
        values = [
            {
                "provider_id": provider_id,
                "kind": r.item.kind,
                "id": r.item.id,
                "name": r.item.name,
                "status": r.item.status,
                "parent": r.item.parent,
                "revision": db.revision_seq.next_value(),
                "digest": r.digest,
                "data": dict(r.item.data),
                "concerns": r.concerns,
                "concern_level": r.level,
                "concern_categories": r.categories,
                "deleted": False,
                "updated_at": func.now(),
            }
            for r in rows
        ]
        insert = pg_insert(o).values(values)
        upsert = insert.on_conflict_do_update(
            index_elements=[o.c.provider_id, o.c.kind, o.c.id],
            set_={
                c: insert.excluded[c]
                for c in (
                    "name",
                    "status",
                    "parent",
                    "revision",
                    "digest",
                    "data",
                    "concerns",
                    "concern_level",
                    "concern_categories",
                    "deleted",
                    "updated_at",
                )
            },
        ).returning(
            o.c.kind,
            o.c.id,
            o.c.name,
            o.c.revision,
            # xmax is 0 for a freshly inserted row, the updating transaction's id otherwise.
            literal_column("(xmax = 0)").label("inserted"),
        )
        return (await conn.execute(upsert)).all()

    async def _tombstone(
        self, conn: AsyncConnection, provider_id: str, keys: Iterable[tuple[str, str]]
    ) -> list[Any]:
        o = db.objects
        out: list[Any] = []
        for chunk in _chunks(sorted(keys), CHUNK):
            stmt = (
                update(o)
                .where(o.c.provider_id == provider_id, tuple_(o.c.kind, o.c.id).in_(chunk))
                .values(
                    deleted=True,
                    revision=db.revision_seq.next_value(),
                    updated_at=func.now(),
                )
                .returning(o.c.kind, o.c.id, o.c.name, o.c.revision)
            )
            out.extend((await conn.execute(stmt)).all())
        return out

    async def _recount(self, conn: AsyncConnection, provider_id: str) -> None:
        o = db.objects
        counts: dict[str, int] = dict(
            (
                await conn.execute(
                    select(o.c.kind, func.count())
                    .where(o.c.provider_id == provider_id, ~o.c.deleted)
                    .group_by(o.c.kind)
                )
            ).all()
        )
        await conn.execute(
            update(db.providers).where(db.providers.c.id == bindparam("pid")).values(counts=counts),
            {"pid": provider_id},
        )

    async def _announce(self, conn: AsyncConnection, events: list[InventoryObjectChanged]) -> None:
        async with AsyncSession(bind=conn, join_transaction_mode="create_savepoint") as session:
            for e in events:
                await self.outbox.add(
                    session,
                    catalog.INVENTORY_CHANGED,
                    e,
                    event_id=f"inv-{e.provider_id}-{e.kind}-{e.object_id}-{e.revision}",
                )
            await session.commit()


def _event(
    provider_id: str, kind: str, oid: str, name: str, action: ChangeAction, revision: int
) -> InventoryObjectChanged:
    return InventoryObjectChanged(
        provider_id=provider_id,
        kind=kind,
        object_id=oid,
        name=name or "",
        action=action,
        revision=revision,
    )


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
