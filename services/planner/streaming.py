"""A server-sent-events stream of plan status, resumable by revision.

Frames: ``plan`` (the plan's status, as ``GET /plans/{plan}`` shows it), ``migration`` (a
migration with its counts) and ``vm`` (a VM's summary; with ``pipeline=true`` its pipeline
too, as ``GET /plans/{plan}/vms/{vm}`` shows it), each with the row's revision as event id.
Every row keeps only its latest revision, so ``since=0`` replays the current state of
everything and then follows; reconnecting with ``Last-Event-ID`` resumes where it stopped.

Read from PostgreSQL (like the inventory stream), so any replica serves any client. A
revision is taken before the transaction that writes it commits, so a row may become
visible after rows with higher revisions: a plain ``revision > last`` poll would skip it
for ever (a VM's final state lost). The stream therefore re-reads from a *floor* below
which every transaction has finished, skipping the revisions it already sent: at each poll
it notes the highest revision sent and the transactions then in progress
(``pg_current_snapshot()``); once those have all ended, and a grace period has passed (for a
writer that took its revision before writing anything), the floor rises to that revision.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, Table, any_, bindparam, func, not_, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.planner import db, status

log = logging.getLogger("hoist.planner.streaming")

POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 15.0
GRACE_SECONDS = 2.0
STUCK_SECONDS = 60.0
"""A transaction open this long (idle in transaction, say) stops holding the floor back."""
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


def frame(event: str, revision: int, data: dict[str, Any]) -> str:
    return f"id: {revision}\nevent: {event}\ndata: {json.dumps(data, default=str)}\n\n"


#: What a frame reads of a plan (its status, never its VMs: 10,000 entries of JSON) and of
#: a migration (not its frozen plan).
_COLUMNS: dict[str, tuple[Any, ...]] = {
    "plans": tuple(db.plans.c[k] for k in ("id", "name", "phase", "migration_id", "revision")),
    "migrations": db.migration_status,
}


def _owner(table: Table) -> Any:
    return table.c.id if table is db.plans else table.c.plan_id


async def current_revision(engine: AsyncEngine, plan_id: str | None = None) -> int:
    """The highest revision of any plan, migration or VM (of one plan) now."""
    best = 0
    async with engine.connect() as conn:
        for table in (db.plans, db.migrations, db.vms):
            q = select(func.max(table.c.revision))
            if plan_id is not None:
                q = q.where(_owner(table) == plan_id)
            best = max(best, int(await conn.scalar(q) or 0))
    return best


@dataclass(frozen=True)
class _Snapshot:
    xmin: int
    xmax: int
    running: frozenset[int]

    @classmethod
    def parse(cls, value: str) -> _Snapshot:
        xmin, xmax, xip = value.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x))

    def ended(self, xid: int) -> bool:
        return xid < self.xmin or (xid < self.xmax and xid not in self.running)


@dataclass
class Cursor:
    """What a stream has sent: everything up to ``floor``, and ``sent`` above it."""

    floor: int
    sent: set[int] = field(default_factory=set)
    pending: list[tuple[int, frozenset[int], float]] = field(default_factory=list)

    @property
    def highest(self) -> int:
        return max(self.sent, default=self.floor)

    def settle(self, snap: _Snapshot, now: float) -> None:
        """Raise the floor past the checkpoints whose writers have all ended."""
        while self.pending:
            revision, xids, at = self.pending[0]
            waited = now - at
            if waited < GRACE_SECONDS:
                break
            if waited < STUCK_SECONDS and not all(snap.ended(x) for x in xids):
                break
            self.pending.pop(0)
            self.floor = max(self.floor, revision)
        self.sent = {r for r in self.sent if r > self.floor}


async def poll(
    conn: AsyncConnection, cursor: Cursor, plan_id: str | None, pipeline: bool
) -> list[str]:
    """One round: the frames of rows changed since ``cursor`` (in revision order, at most
    ``BATCH``), the cursor advanced. ``conn`` must be in a REPEATABLE READ transaction so
    the snapshot and the rows agree."""
    snap = _Snapshot.parse(str(await conn.scalar(text("SELECT pg_current_snapshot()::text"))))
    found: dict[str, list[Any]] = {}
    cutoff: int | None = None
    for kind, table in (("plan", db.plans), ("migration", db.migrations), ("vm", db.vms)):
        columns = _COLUMNS.get(table.name, tuple(table.c))
        q = select(*columns).where(table.c.revision > cursor.floor)
        if cursor.sent:
            sent = bindparam("sent", sorted(cursor.sent), type_=ARRAY(BigInteger))
            q = q.where(not_(table.c.revision == any_(sent)))
        if plan_id is not None:
            q = q.where(_owner(table) == plan_id)
        rows = (await conn.execute(q.order_by(table.c.revision).limit(BATCH))).mappings().all()
        found[kind] = list(rows)
        if len(rows) == BATCH:  # more to come: nothing past the last can go out yet
            last = rows[-1]["revision"]
            cutoff = last if cutoff is None else min(cutoff, last)
    chosen = sorted(
        ((r["revision"], kind, r) for kind, rows in found.items() for r in rows),
        key=lambda x: x[0],
    )
    if cutoff is not None:
        chosen = [c for c in chosen if c[0] <= cutoff]
    frames = await _render(conn, chosen, pipeline)
    cursor.sent.update(c[0] for c in chosen)
    now = time.monotonic()
    cursor.pending.append((cursor.highest, snap.running, now))
    if cutoff is None:
        # Every row this snapshot shows above the floor has gone out: the checkpoints whose
        # writers had ended by now are complete (settling before reading would skip the
        # rows those writers committed since the last round).
        cursor.settle(snap, now)
    return frames


async def _render(conn: AsyncConnection, chosen: list[Any], pipeline: bool) -> list[str]:
    migrations = [r for _, kind, r in chosen if kind == "migration"]
    mviews = {m["id"]: m for m in await status.migration_views(conn, migrations)}
    vm_rows = [r for _, kind, r in chosen if kind == "vm"]
    vm_keys = [(r["migration_id"], r["vm_id"]) for r in vm_rows]
    pipes = await status.pipelines(conn, vm_keys) if pipeline else {}
    waits = await status.waits(conn, vm_rows)
    out: list[str] = []
    for revision, kind, r in chosen:
        if kind == "plan":
            data = await status.plan_status(conn, r)
        elif kind == "migration":
            data = mviews[r["id"]]
        else:
            data = status.vm_summary(r, waits.get((r["migration_id"], r["vm_id"])))
            if pipeline:
                data["pipeline"] = pipes.get((r["migration_id"], r["vm_id"]), [])
        out.append(frame(kind, revision, data))
    return out


async def changes(
    engine: AsyncEngine,
    since: int,
    *,
    plan_id: str | None = None,
    pipeline: bool = False,
    disconnected: Callable[[], Awaitable[bool]],
) -> AsyncIterator[str]:
    """SSE frames for every change after revision ``since``, until the client leaves."""
    cursor = Cursor(floor=since)
    beat = time.monotonic()
    yield f"retry: 2000\n: resuming after revision {since}\n\n"
    while not await disconnected():
        try:
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="REPEATABLE READ")
                async with conn.begin():
                    frames = await poll(conn, cursor, plan_id, pipeline)
        except (OSError, SQLAlchemyError) as exc:  # PostgreSQL away: keep the client
            log.warning("status stream: %s; trying again", exc)
            frames = []
        for f in frames:
            yield f
        if frames:
            beat = time.monotonic()
        elif time.monotonic() - beat > HEARTBEAT_SECONDS:
            beat = time.monotonic()
            yield ": keep-alive\n\n"
        if len(frames) < BATCH:
            await asyncio.sleep(POLL_SECONDS)
