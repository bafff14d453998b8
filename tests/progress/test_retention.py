"""Finished disks and old history points are forgotten after the retention period; running
disks and recent points are kept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.progress import db
from services.progress.recording import Recorder
from shared.bus import Bus
from shared.settings import NatsSettings, ProgressSettings


def disk(disk_id: str, state: str, finished: datetime | None) -> dict[str, object]:
    return {
        "disk_id": disk_id, "plan_id": "p", "migration_id": "m", "vm_id": "v",
        "cluster_id": "c", "namespace": "ns", "pod": f"populate-{disk_id}",
        "metrics_port": 8443, "metrics_scheme": "https", "owner_uid": disk_id,
        "state": state, "rev": 1, "finished_at": finished,
    }  # fmt: skip


async def test_expire_forgets_only_what_is_old(migrated_engine: AsyncEngine) -> None:
    now = datetime.now(UTC)
    old, recent, running = (f"ret-{k}-{uuid.uuid4().hex[:8]}" for k in ("old", "new", "run"))
    ids = [old, recent, running]
    async with migrated_engine.begin() as conn:
        await conn.execute(insert(db.disks), [
            disk(old, "succeeded", now - timedelta(days=40)),
            disk(recent, "succeeded", now - timedelta(days=2)),
            disk(running, "running", None),
        ])  # fmt: skip
        await conn.execute(insert(db.history), [
            {"disk_id": d, "at": at, "bytes_done": 1, "percent": 1.0}
            for d in ids
            for at in (now - timedelta(days=45), now - timedelta(days=1))
        ])  # fmt: skip
    recorder = Recorder(
        migrated_engine, Bus(NatsSettings(), source="/t"), ProgressSettings(), {}, {}
    )
    try:
        await recorder.expire()
        async with migrated_engine.connect() as conn:
            known = select(db.disks.c.disk_id).where(db.disks.c.disk_id.in_(ids))
            kept = set((await conn.execute(known)).scalars())
            points = (await conn.execute(
                select(db.history.c.disk_id, db.history.c.at)
                .where(db.history.c.disk_id.in_(ids)))).all()  # fmt: skip
        assert kept == {recent, running}
        assert {d for d, _ in points} == {recent, running}
        assert all(at > now - timedelta(days=30) for _, at in points)
    finally:
        async with migrated_engine.begin() as conn:
            await conn.execute(delete(db.history).where(db.history.c.disk_id.in_(ids)))
            await conn.execute(delete(db.disks).where(db.disks.c.disk_id.in_(ids)))
