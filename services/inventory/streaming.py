"""A server-sent-events stream of inventory changes, resumable by revision.

Why read the database rather than an in-process broadcast: any replica can serve a stream
whatever replica collects the provider, and a client that reconnects with ``Last-Event-ID``
(the revision it saw last) gets exactly what it missed, from the tombstones included. The
poll is one indexed range scan on ``revision`` per interval, cheap enough at one per client.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.inventory import db, providers

POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 15.0
BATCH = 500
#: Revisions are PostgreSQL bigints: a ``since`` above this is refused before the stream
#: starts (its first query would fail, ending a stream already answered 200).
MAX_REVISION = 2**63 - 1


def revision_of(event_id: str) -> int | None:
    """The revision a ``Last-Event-ID`` names, or None if it cannot be one of this stream."""
    if not (event_id.isascii() and event_id.isdigit()) or len(event_id.lstrip("0")) > 19:
        return None
    revision = int(event_id)
    return revision if revision <= MAX_REVISION else None


async def current_revision(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        a = await conn.scalar(select(func.max(db.objects.c.revision))) or 0
        b = await conn.scalar(select(func.max(db.providers.c.revision))) or 0
    return max(a, b)


def _frame(event: str, revision: int, data: dict[str, Any]) -> str:
    return f"id: {revision}\nevent: {event}\ndata: {json.dumps(data, default=str)}\n\n"


async def changes(
    engine: AsyncEngine,
    since: int,
    *,
    provider_id: str | None,
    kinds: Sequence[str],
    disconnected: Callable[[], Any],
) -> AsyncIterator[str]:
    """SSE frames for every change after revision ``since``, forever."""
    o, p = db.objects, db.providers
    last = since
    beat = time.monotonic()
    yield f"retry: 2000\n: resuming after revision {since}\n\n"
    while not await disconnected():
        frames: list[tuple[int, str]] = []
        async with engine.connect() as conn:
            q = select(
                o.c.provider_id, o.c.kind, o.c.id, o.c.name, o.c.status, o.c.revision, o.c.deleted
            ).where(o.c.revision > last)
            if provider_id:
                q = q.where(o.c.provider_id == provider_id)
            if kinds:
                q = q.where(o.c.kind.in_(kinds))
            for r in (await conn.execute(q.order_by(o.c.revision).limit(BATCH))).mappings():
                frames.append(
                    (
                        r["revision"],
                        _frame(
                            "object",
                            r["revision"],
                            {
                                "providerId": r["provider_id"],
                                "kind": r["kind"],
                                "id": r["id"],
                                "name": r["name"],
                                "status": r["status"],
                                "action": "deleted" if r["deleted"] else "changed",
                                "revision": r["revision"],
                            },
                        ),
                    )
                )
            pq = select(p).where(p.c.revision > last)
            if provider_id:
                pq = pq.where(p.c.id == provider_id)
            for r in (await conn.execute(pq.order_by(p.c.revision).limit(BATCH))).mappings():
                frames.append(
                    (r["revision"], _frame("provider", r["revision"], providers.as_public(r)))
                )
        frames.sort(key=lambda f: f[0])
        if len(frames) > BATCH:
            frames = frames[:BATCH]  # the rest comes next round, in order
        for revision, frame in frames:
            last = revision
            yield frame
        if frames:
            beat = time.monotonic()
        elif time.monotonic() - beat > HEARTBEAT_SECONDS:
            beat = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(POLL_SECONDS)
