"""The store and the query layer on a real PostgreSQL: revisions, tombstones, events,
concerns, keyset pages."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.inventory import db, querying
from services.inventory.items import Batch, Category, Concern, Item
from services.inventory.storing import ProviderGone, Store
from shared.bus import Bus
from shared.db.messaging import Outbox
from shared.payloads import ProviderType
from shared.settings import NatsSettings, OutboxSettings

OVIRT = ProviderType.OVIRT


def vm(i: int, status: str = "up", **data: Any) -> Item:
    return Item("vm", f"vm-{i:05d}", f"vm-{i:05d}", {"memory": 1 << 30, **data}, status, "c1")


def locked(item: Item) -> list[Concern]:
    if item.data.get("locked"):
        return [Concern("test.locked", "Locked", Category.CRITICAL, "wait")]
    if item.data.get("shared"):
        return [Concern("test.shared", "Shared", Category.WARNING, "careful")]
    return []


@pytest.fixture
def store(migrated_engine: AsyncEngine) -> Store:
    table = db.metadata.tables["inventory.outbox"]
    outbox = Outbox(migrated_engine, table, Bus(NatsSettings(), source="/t"), OutboxSettings())
    return Store(migrated_engine, outbox)


@pytest.fixture
async def pid(migrated_engine: AsyncEngine) -> str:
    """A provider row of the test's own (batches of unknown providers are refused)."""
    provider_id = str(uuid.uuid4())
    async with migrated_engine.begin() as conn:
        await conn.execute(
            insert(db.providers).values(
                id=provider_id,
                name=f"p-{provider_id[:8]}",
                type="ovirt",
                secret_namespace="hoist",
                secret_name=f"hoist-provider-{provider_id}",
                phase="Ready",
                revision=db.revision_seq.next_value(),
            )
        )
    return provider_id


async def events_of(engine: AsyncEngine, pid: str) -> list[dict[str, Any]]:
    o = db.metadata.tables["inventory.outbox"]
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(o.c.envelope).where(o.c.subject.contains(pid)).order_by(o.c.seq)
        )
        return [r[0]["data"] for r in rows]


async def test_unchanged_objects_keep_their_revision(store: Store, pid: str) -> None:
    batch = Batch([vm(i) for i in range(50)], complete=frozenset({"vm"}))
    first = await store.apply(pid, OVIRT, batch, locked, announce=False)
    assert (first.created, first.updated, first.deleted) == (50, 0, 0)
    again = await store.apply(pid, OVIRT, batch, locked, announce=True)
    assert (again.changed, again.unchanged) == (0, 50)
    assert await events_of(store.engine, pid) == []  # a first load is not announced


async def test_changes_deletions_and_events(store: Store, pid: str) -> None:
    await store.apply(
        pid,
        OVIRT,
        Batch([vm(i) for i in range(5)], complete=frozenset({"vm"})),
        locked,
        announce=False,
    )
    # vm 1 changes, vm 4 disappears from a complete listing, vm 9 is new
    relist = Batch([vm(0), vm(1, "down"), vm(2), vm(3), vm(9)], complete=frozenset({"vm"}))
    applied = await store.apply(pid, OVIRT, relist, locked, announce=True)
    assert (applied.created, applied.updated, applied.deleted) == (1, 1, 1)
    # an incremental batch: an explicit deletion, and one unknown key that is ignored
    gone = Batch(deleted=[("vm", "vm-00000"), ("vm", "nope")])
    assert (await store.apply(pid, OVIRT, gone, locked, announce=True)).deleted == 1
    events = await events_of(store.engine, pid)
    actions = sorted((e["object_id"], e["action"]) for e in events)
    assert actions == [
        ("vm-00000", "deleted"),
        ("vm-00001", "updated"),
        ("vm-00004", "deleted"),
        ("vm-00009", "created"),
    ]
    revisions = [e["revision"] for e in events]
    assert revisions == sorted(revisions)
    assert len(set(revisions)) == 4
    # a deleted object that comes back is created again
    back = await store.apply(pid, OVIRT, Batch([vm(4)]), locked, announce=True)
    assert back.created == 1
    async with store.engine.connect() as conn:
        counts = await conn.scalar(select(db.providers.c.counts).where(db.providers.c.id == pid))
    assert counts == {"vm": 5}


async def test_a_deleted_provider_stores_nothing(store: Store) -> None:
    with pytest.raises(ProviderGone):
        await store.apply(str(uuid.uuid4()), OVIRT, Batch([vm(0)]), locked, announce=True)


async def test_kinds_a_type_does_not_collect_are_refused(store: Store, pid: str) -> None:
    with pytest.raises(ValueError, match="storageclass"):
        await store.apply(
            pid,
            OVIRT,
            Batch([Item("storageclass", "standard", "standard", {})]),
            locked,
            announce=False,
        )


async def test_concerns_are_stored_and_filterable(store: Store, pid: str) -> None:
    items = [vm(0), vm(1, locked=True), vm(2, shared=True), vm(3, locked=True)]
    await store.apply(pid, OVIRT, Batch(items, complete=frozenset({"vm"})), locked, announce=False)
    async with store.engine.connect() as conn:
        crit, _, total = await querying.page(
            conn, pid, "vm", querying.Query(concern=Category.CRITICAL, detail=1)
        )
        assert total == 2
        assert [i["id"] for i in crit] == ["vm-00001", "vm-00003"]
        assert crit[0]["concerns"][0]["id"] == "test.locked"
        assert crit[0]["concernLevel"] == "Critical"
        worst, _, _ = await querying.page(conn, pid, "vm", querying.Query(sort="-concerns"))
        assert [i["concernLevel"] for i in worst] == ["Critical", "Critical", "Warning", None]
    # the concern goes when the VM changes
    await store.apply(pid, OVIRT, Batch([vm(1)]), locked, announce=True)
    async with store.engine.connect() as conn:
        _, _, total = await querying.page(
            conn, pid, "vm", querying.Query(concern=Category.CRITICAL)
        )
    assert total == 1


async def test_cursor_walk_sees_each_object_once(store: Store, pid: str) -> None:
    items = [vm(i, "up" if i % 3 else "down") for i in range(257)]
    await store.apply(pid, OVIRT, Batch(items, complete=frozenset({"vm"})), locked, announce=False)
    for sort in ("name", "-name", "status", "-revision", "concerns"):
        seen: list[str] = []
        cursor = None
        async with store.engine.connect() as conn:
            while True:
                q = querying.Query(sort=sort, limit=40, cursor=cursor)
                got, cursor, total = await querying.page(conn, pid, "vm", q)
                seen += [g["id"] for g in got]
                if cursor is None:
                    break
        assert total == 257
        assert sorted(seen) == sorted(i.id for i in items), sort
    async with store.engine.connect() as conn:
        down, _, total = await querying.page(conn, pid, "vm", querying.Query(status="DOWN"))
        assert total == 86
        assert all(d["status"] == "down" for d in down)
        found, _, _ = await querying.page(conn, pid, "vm", querying.Query(search="0025"))
        assert [f["id"] for f in found] == ["vm-00025"] + [f"vm-0025{i}" for i in range(7)]
        with pytest.raises(querying.BadQuery):
            await querying.page(conn, pid, "vm", querying.Query(cursor="garbage!"))


async def test_forged_cursors_are_bad_queries(store: Store, pid: str) -> None:
    """A cursor whose values do not fit the sort (issue 24: ``[1,2]`` made PostgreSQL fail
    on ``operator does not exist``) is a ``BadQuery`` (400); one that fits is a page."""
    batch = Batch([vm(0), vm(1)], complete=frozenset({"vm"}))
    await store.apply(pid, OVIRT, batch, locked, announce=False)
    forged: list[tuple[str, Any]] = [
        ("name", [1, 2]),
        ("-concerns", [1, 2]),
        ("name", ["vm-00000", 2]),
        ("status", [None, "vm-00000"]),
        ("name", ["a\x00", "vm-00000"]),
        ("name", ["\ud800", "vm-00000"]),
        ("revision", ["1", "vm-00000"]),
        ("revision", [True, "vm-00000"]),
        ("revision", [1.5, "vm-00000"]),
        ("-revision", [2**63, "vm-00000"]),
        ("concerns", [2**15, "vm-00000"]),
        ("concerns", [1, ["vm-00000"]]),
        ("name", {"a": 1}),
        ("name", ["a", "b", "c"]),
    ]
    async with store.engine.connect() as conn:
        for sort, values in forged:
            q = querying.Query(sort=sort, cursor=querying.encode_cursor(values))
            with pytest.raises(querying.BadQuery) as bad:
                await querying.page(conn, pid, "vm", q)
            assert bad.value.detail()[0]["loc"] == ["query", "cursor"], (sort, values)
        fitting: list[tuple[str, list[Any], list[str]]] = [
            ("name", ["vm-00000", "vm-00000"], ["vm-00001"]),
            ("-revision", [2**63 - 1, ""], ["vm-00000", "vm-00001"]),
            ("revision", [2**40, ""], []),
            ("-concerns", [2**15 - 1, ""], ["vm-00000", "vm-00001"]),
        ]
        for sort, values, expected in fitting:
            q = querying.Query(sort=sort, cursor=querying.encode_cursor(values))
            got, _, _ = await querying.page(conn, pid, "vm", q)
            assert sorted(g["id"] for g in got) == expected, (sort, values)


async def test_collection_revision_moves_on_delete(store: Store, pid: str) -> None:
    await store.apply(
        pid, OVIRT, Batch([vm(0), vm(1)], complete=frozenset({"vm"})), locked, announce=False
    )
    async with store.engine.connect() as conn:
        before = await querying.collection_revision(conn, pid, "vm")
    await store.apply(pid, OVIRT, Batch(deleted=[("vm", "vm-00001")]), locked, announce=False)
    async with store.engine.connect() as conn:
        after = await querying.collection_revision(conn, pid, "vm")
        assert after > before
        live = await conn.scalar(
            select(func.count())
            .select_from(db.objects)
            .where(db.objects.c.provider_id == pid, db.objects.c.deleted.is_(False))
        )
    assert live == 1
