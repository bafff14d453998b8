"""Which populator pods to scrape: registered from events or the pod watch, loaded by rev.

Both discovery sources end in ``register()`` (an upsert keyed by disk) and ``finish()``;
either alone suffices, and both together agree because the upsert changes a row (and bumps
its ``rev``) only when where-to-scrape really changed:

- a new migration of the disk replaces the row and its samples;
- a new pod for the same migration (the populator was retried) moves the row to that pod and
  back to ``running``, keeping the bytes seen so far;
- the same pod announced again (a redelivered event, every status change the watch sees)
  changes nothing, and a finished pod is never revived by it.

Every replica keeps all rows in memory (a few hundred bytes each) and reads only rows whose
``rev`` is newer than the last it saw, one indexed range scan per round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.progress import db
from shared import populator as contract

RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"


@dataclass(frozen=True)
class PodInfo:
    """What discovery knows of one populator pod (an event or a pod's labels/annotations)."""

    plan_id: str
    migration_id: str
    vm_id: str
    disk_id: str
    cluster_id: str
    namespace: str
    pod: str
    owner_uid: str
    pod_ip: str | None = None
    metrics_port: int = contract.METRICS_PORT
    metrics_scheme: str = contract.METRICS_SCHEME
    total_bytes: int = 0
    populator_kind: str = ""


@dataclass
class Target:
    """One disk's row as a replica holds it, plus the last sample it saw (for the rate)."""

    disk_id: str
    plan_id: str
    migration_id: str
    vm_id: str
    cluster_id: str
    namespace: str
    pod: str
    pod_ip: str | None
    metrics_port: int
    metrics_scheme: str
    owner_uid: str
    total_bytes: int
    state: str
    rev: int
    bytes_done: int = 0
    percent: float = 0.0
    rate: float | None = None
    eta_seconds: float | None = None
    observed_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> tuple[str, str, str, str | None, int, str]:
        """Where to scrape; a change of it means a new pod (counters start again)."""
        return (
            self.cluster_id,
            self.namespace,
            self.pod,
            self.pod_ip,
            self.metrics_port,
            self.metrics_scheme,
        )


async def register(session: AsyncSession | AsyncConnection, info: PodInfo, source: str) -> bool:
    """Upsert the disk's row from ``info``; True when it changed (see the module doc)."""
    d = db.disks
    values = {
        "disk_id": info.disk_id,
        "plan_id": info.plan_id,
        "migration_id": info.migration_id,
        "vm_id": info.vm_id,
        "cluster_id": info.cluster_id,
        "namespace": info.namespace,
        "pod": info.pod,
        "pod_ip": info.pod_ip,
        "metrics_port": info.metrics_port,
        "metrics_scheme": info.metrics_scheme,
        "owner_uid": info.owner_uid,
        "populator_kind": info.populator_kind,
        "total_bytes": info.total_bytes,
        "source": source,
        "state": RUNNING,
        "rev": db.rev_seq.next_value(),
    }
    stmt = pg_insert(d).values(**values)
    ex = stmt.excluded
    new_migration = d.c.migration_id != ex.migration_id
    new_pod = or_(d.c.pod != ex.pod, d.c.namespace != ex.namespace, d.c.cluster_id != ex.cluster_id)
    moved = and_(
        d.c.state == RUNNING,
        or_(
            d.c.pod_ip.is_distinct_from(ex.pod_ip),
            d.c.metrics_port != ex.metrics_port,
            d.c.metrics_scheme != ex.metrics_scheme,
            d.c.owner_uid != ex.owner_uid,
        ),
    )
    keep = {k: ex[k] for k in values if k not in ("disk_id", "rev")}
    reset = {
        "bytes_done": case((new_migration, 0), else_=d.c.bytes_done),
        "percent": case((new_migration, 0.0), else_=d.c.percent),
        "rate": None,
        "eta_seconds": None,
        "error": None,
        "finished_at": None,
        "observed_at": case((new_migration, None), else_=d.c.observed_at),
        "started_at": case((new_migration, func.now()), else_=d.c.started_at),
        # the pod IP may be unknown to one source (an event sent before the pod had one)
        "pod_ip": case(
            (or_(new_migration, new_pod), ex.pod_ip), else_=func.coalesce(ex.pod_ip, d.c.pod_ip)
        ),
        "total_bytes": func.greatest(
            ex.total_bytes, case((new_migration, 0), else_=d.c.total_bytes)
        ),
        "rev": db.rev_seq.next_value(),
        "updated_at": func.now(),
    }
    upsert = stmt.on_conflict_do_update(
        index_elements=[d.c.disk_id],
        set_={**keep, **reset},
        where=or_(new_migration, new_pod, moved),
    ).returning(d.c.disk_id)
    return (await session.execute(upsert)).first() is not None


async def finish(
    session: AsyncSession | AsyncConnection,
    *,
    disk_id: str,
    migration_id: str | None,
    pod: str,
    state: str,
    bytes_done: int | None = None,
    error: str | None = None,
) -> bool:
    """Mark the disk's pod ended; True when it was running from that pod."""
    d = db.disks
    values: dict[str, Any] = {
        "state": state,
        "finished_at": func.now(),
        "rate": None,
        "eta_seconds": 0.0 if state == SUCCEEDED else None,
        "error": error,
        "rev": db.rev_seq.next_value(),
        "updated_at": func.now(),
    }
    if bytes_done is not None:
        values["bytes_done"] = bytes_done
    if state == SUCCEEDED:
        values["percent"] = 100.0
        values["bytes_done"] = func.greatest(
            d.c.bytes_done, d.c.total_bytes if bytes_done is None else bytes_done
        )
    q = update(d).where(d.c.disk_id == disk_id, d.c.pod == pod, d.c.state == RUNNING)
    if migration_id is not None:
        q = q.where(d.c.migration_id == migration_id)
    return (await session.execute(q.values(**values).returning(d.c.disk_id))).first() is not None


async def load_since(conn: AsyncConnection, rev: int) -> list[Target]:
    """Rows changed after ``rev`` (all rows for 0), oldest change first."""
    d = db.disks
    rows = await conn.execute(
        select(
            d.c.disk_id,
            d.c.plan_id,
            d.c.migration_id,
            d.c.vm_id,
            d.c.cluster_id,
            d.c.namespace,
            d.c.pod,
            d.c.pod_ip,
            d.c.metrics_port,
            d.c.metrics_scheme,
            d.c.owner_uid,
            d.c.total_bytes,
            d.c.state,
            d.c.rev,
            d.c.bytes_done,
            d.c.percent,
            d.c.rate,
            d.c.eta_seconds,
            d.c.observed_at,
        )
        .where(d.c.rev > rev)
        .order_by(d.c.rev)
    )
    return [Target(**r) for r in rows.mappings()]
