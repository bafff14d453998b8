"""Reading progress for the API: one disk (with history), one VM, one plan.

Everything is read from PostgreSQL, so any replica answers for any disk whichever replica
scrapes it. Sums over disks use the same arithmetic as the VM events (``vm_totals``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.progress import db
from services.progress.recording import vm_totals
from services.progress.targets import FAILED, RUNNING, SUCCEEDED
from shared.service import errors


class NotFound(errors.NotFound, LookupError):
    """No such plan, VM or disk (never seen by this service): a 404 with the message."""


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def disk_view(r: Any) -> dict[str, Any]:
    return {
        "diskId": r.disk_id,
        "vmId": r.vm_id,
        "planId": r.plan_id,
        "migrationId": r.migration_id,
        "clusterId": r.cluster_id,
        "pod": {"namespace": r.namespace, "name": r.pod, "ip": r.pod_ip},
        "populatorKind": r.populator_kind,
        "state": r.state,
        "bytesDone": r.bytes_done,
        "bytesTotal": r.total_bytes,
        "percent": round(r.percent, 2),
        "rateBytesPerSecond": r.rate,
        "etaSeconds": r.eta_seconds,
        "error": r.error,
        "startedAt": _iso(r.started_at),
        "observedAt": _iso(r.observed_at),
        "finishedAt": _iso(r.finished_at),
    }


def _state(disks: Sequence[Any]) -> str:
    states = {d.state for d in disks}
    if RUNNING in states:
        return RUNNING
    return FAILED if FAILED in states else SUCCEEDED


def _totals(disks: Sequence[Any]) -> dict[str, Any]:
    t = vm_totals(disks)
    observed = max((d.observed_at for d in disks if d.observed_at), default=None)
    return {
        "state": _state(disks),
        "disksTotal": t["disks_total"],
        "disksDone": t["disks_done"],
        "bytesDone": t["bytes_done"],
        "bytesTotal": t["bytes_total"],
        "percent": round(t["percent"], 2),
        "rateBytesPerSecond": t["rate_bytes_per_second"],
        "etaSeconds": t["eta_seconds"],
        "observedAt": _iso(observed),
    }


async def disk(engine: AsyncEngine, disk_id: str, history_limit: int) -> dict[str, Any]:
    d, h = db.disks, db.history
    async with engine.connect() as conn:
        row = (await conn.execute(select(d).where(d.c.disk_id == disk_id))).first()
        if row is None:
            raise NotFound(f"no progress for disk {disk_id!r}: no populator pod of it was seen")
        points = (
            await conn.execute(
                select(h.c.at, h.c.bytes_done, h.c.percent)
                .where(h.c.disk_id == disk_id, h.c.at >= row.started_at)
                .order_by(h.c.at.desc())
                .limit(history_limit)
            )
        ).all()
    view = disk_view(row)
    view["history"] = [
        {"at": _iso(p.at), "bytesDone": p.bytes_done, "percent": round(p.percent, 2)}
        for p in reversed(points)
    ]
    return view


async def vm(engine: AsyncEngine, vm_id: str) -> dict[str, Any]:
    d = db.disks
    async with engine.connect() as conn:
        rows = (await conn.execute(select(d).where(d.c.vm_id == vm_id).order_by(d.c.disk_id))).all()
    if not rows:
        raise NotFound(f"no progress for VM {vm_id!r}: no populator pod of its disks was seen")
    return {
        "vmId": vm_id,
        "planId": rows[0].plan_id,
        "migrationId": rows[0].migration_id,
        **_totals(rows),
        "disks": [disk_view(r) for r in rows],
    }


async def plan(engine: AsyncEngine, plan_id: str) -> dict[str, Any]:
    d = db.disks
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(d).where(d.c.plan_id == plan_id).order_by(d.c.vm_id, d.c.disk_id)
            )
        ).all()
    if not rows:
        raise NotFound(f"no progress for plan {plan_id!r}: no populator pod of it was seen")
    vms: dict[str, list[Any]] = {}
    for r in rows:
        vms.setdefault(r.vm_id, []).append(r)
    return {
        "planId": plan_id,
        **_totals(rows),
        "vms": [
            {"vmId": v, "migrationId": rs[0].migration_id, **_totals(rs)} for v, rs in vms.items()
        ],
    }
