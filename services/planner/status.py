"""Reading plan status for the API and the event stream: plans, migrations, VMs, pipelines.

Views are plain JSON (camelCase keys, ISO-8601 times) built from the rows the projector
keeps. A migration's VM counts and bytes are summed from its VM rows in one grouped query,
so ``pending`` and ``running`` are as current as the rest; several migrations (or VMs and
their pipelines) are read in one round trip each, which the stream relies on.

A VM that waits to be admitted (or for the cutover) says why in its summary, ``waiting``:
the ``detail.waiting`` of its first Pending step that has one, with the step's name and
note. It is read from the steps (one query per page of VMs, only for VMs not final), not
copied into the VM row, so the projector's hot path writes nothing more for it.
"""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.planner import db
from services.planner.errors import BadCursor, NotFound
from shared.ids import is_uuid
from shared.payloads import StepState
from shared.pipeline import PLAN_VM_FINAL, PlanVmPhase

Conn = AsyncConnection | AsyncSession
VmKey = tuple[str, str]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _progress(done: int, total: int) -> dict[str, int]:
    return {"completed": int(done), "total": int(total)}


# --- lookups -------------------------------------------------------------------------------


#: What status reads of a plan: not its VMs nor its problems (a plan of 10,000 VMs holds
#: megabytes of JSON there, decoded for nothing on every read of its status).
PLAN_STATUS = tuple(c for c in db.plans.c if c.name not in ("vms", "problems"))


async def find_plan(conn: Conn, ref: str) -> Mapping[Any, Any]:
    """A plan by id (when ``ref`` is a UUID) or by name, its status columns only."""
    p = db.plans
    column = p.c.id if is_uuid(ref) else p.c.name
    row = (await conn.execute(select(*PLAN_STATUS).where(column == ref))).mappings().first()
    if row is None:
        raise NotFound(f"no plan {ref!r}")
    return row


async def find_migration(
    conn: Conn, plan: Mapping[Any, Any], ref: str | None
) -> Mapping[Any, Any] | None:
    """A migration of ``plan`` by id or by number; ``None`` means the plan's current one
    (``None`` back if the plan never started)."""
    m, columns = db.migrations, db.migration_status
    if ref is None:
        if plan["migration_id"] is None:
            return None
        query = select(*columns).where(m.c.id == plan["migration_id"])
    elif ref.isdigit():
        query = select(*columns).where(m.c.plan_id == plan["id"], m.c.number == int(ref))
    else:
        query = select(*columns).where(m.c.plan_id == plan["id"], m.c.id == ref)
    row = (await conn.execute(query)).mappings().first()
    if row is None and ref is not None:
        raise NotFound(f"plan {plan['name']!r} has no migration {ref!r}")
    return row


# --- migrations and plans ------------------------------------------------------------------


async def migration_views(conn: Conn, rows: Sequence[Mapping[Any, Any]]) -> list[dict[str, Any]]:
    """Views of migration rows, their VM counts and bytes summed in one query."""
    if not rows:
        return []
    v = db.vms
    sums = await conn.execute(
        select(
            v.c.migration_id,
            v.c.phase,
            func.count(),
            func.coalesce(func.sum(v.c.bytes_done), 0),
            func.coalesce(func.sum(v.c.bytes_total), 0),
        )
        .where(v.c.migration_id.in_([r["id"] for r in rows]))
        .group_by(v.c.migration_id, v.c.phase)
    )
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    done: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    for mid, phase, n, b_done, b_total in sums:
        counts[mid][phase] = int(n)
        done[mid] += int(b_done)
        total[mid] += int(b_total)
    return [migration_view(r, counts[r["id"]], done[r["id"]], total[r["id"]]) for r in rows]


def migration_view(
    r: Mapping[Any, Any], by_phase: Mapping[str, int], done: int, total: int
) -> dict[str, Any]:
    return {
        "id": r["id"],
        "planId": r["plan_id"],
        "number": r["number"],
        "phase": r["phase"],
        "cancelRequested": r["cancel_requested"],
        "startedAt": _iso(r["started_at"]),
        "completedAt": _iso(r["completed_at"]),
        "vms": {
            "total": r["vms_total"],
            **{p.lower(): by_phase.get(p, 0) for p in PlanVmPhase},
            "skipped": r["vms_skipped"],
        },
        "progress": _progress(done, total),
        "revision": r["revision"],
    }


async def migrations_of(conn: Conn, plan_id: str) -> list[dict[str, Any]]:
    """Every migration of a plan, newest first."""
    m = db.migrations
    rows = (
        (
            await conn.execute(
                select(*db.migration_status)
                .where(m.c.plan_id == plan_id)
                .order_by(m.c.number.desc())
            )
        )
        .mappings()
        .all()
    )
    return await migration_views(conn, rows)


async def current_migrations(
    conn: Conn, plan_rows: Sequence[Mapping[Any, Any]]
) -> dict[str, dict[str, Any]]:
    """The current migration of each of these plans (plan id -> view), in two queries."""
    ids = [r["migration_id"] for r in plan_rows if r["migration_id"]]
    if not ids:
        return {}
    m = db.migrations
    rows = (await conn.execute(select(*db.migration_status).where(m.c.id.in_(ids)))).mappings()
    return {v["planId"]: v for v in await migration_views(conn, rows.all())}


async def plan_status(conn: Conn, plan_row: Mapping[Any, Any]) -> dict[str, Any]:
    """A plan's phase, its current migration (or ``None``) and the earlier ones."""
    views = await migrations_of(conn, plan_row["id"])
    current = next((m for m in views if m["id"] == plan_row["migration_id"]), None)
    return {
        "id": plan_row["id"],
        "name": plan_row["name"],
        "phase": plan_row["phase"],
        "migration": current,
        "history": [m for m in views if m is not current],
        "revision": plan_row["revision"],
    }


# --- VMs -----------------------------------------------------------------------------------


def vm_summary(r: Mapping[Any, Any], waiting: dict[str, Any] | None = None) -> dict[str, Any]:
    """A VM without its pipeline; ``waiting`` as ``waits`` found it (None: not waiting)."""
    return {
        "id": r["vm_id"],
        "name": r["name"],
        "targetName": r["target_name"],
        "planId": r["plan_id"],
        "migrationId": r["migration_id"],
        "phase": r["phase"],
        "step": r["step"],
        "cancelRequested": r["cancel_requested"],
        "startedAt": _iso(r["started_at"]),
        "completedAt": _iso(r["completed_at"]),
        "error": r["error"],
        "targetVm": r["target_vm"],
        "progress": _progress(r["bytes_done"], r["bytes_total"]),
        "rateBytesPerSecond": r["rate"],
        "etaSeconds": r["eta_seconds"],
        "waiting": waiting if r["phase"] not in PLAN_VM_FINAL else None,
        "revision": r["revision"],
    }


def waiting_view(step: str, state: str, detail: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What a step says about its VM waiting: ``{step, note, reason, held, limit, place,
    estimatedStart, cutover, observedAt}`` as the orchestrator reported them (keys it left
    out are absent), or None when the step is not Pending or reports no wait."""
    wait = (detail or {}).get("waiting")
    if state != StepState.PENDING or not isinstance(wait, dict):
        return None
    note = (detail or {}).get("note")
    return {**wait, "step": step, "note": note if isinstance(note, str) else ""}


async def waits(conn: Conn, rows: Iterable[Mapping[Any, Any]]) -> dict[VmKey, dict[str, Any]]:
    """Why each of these VM rows that is not final waits, if it does (one query)."""
    wanted = sorted(
        {(r["migration_id"], r["vm_id"]) for r in rows if r["phase"] not in PLAN_VM_FINAL}
    )
    if not wanted:
        return {}
    s = db.steps
    found = await conn.execute(
        select(s.c.migration_id, s.c.vm_id, s.c.step, s.c.state, s.c.detail)
        .where(
            tuple_(s.c.migration_id, s.c.vm_id).in_(wanted),
            s.c.state == StepState.PENDING.value,
            s.c.detail.has_key("waiting"),
        )
        .order_by(s.c.migration_id, s.c.vm_id, s.c.position, s.c.step)
    )
    result: dict[VmKey, dict[str, Any]] = {}
    for r in found.mappings():
        key = (r["migration_id"], r["vm_id"])
        view = None if key in result else waiting_view(r["step"], r["state"], r["detail"])
        if view is not None:
            result[key] = view
    return result


def _task_view(t: Mapping[Any, Any]) -> dict[str, Any]:
    return {
        "id": t["task"],
        "name": t["name"],
        "state": t["state"],
        "attempt": t["attempt"],
        "startedAt": _iso(t["started_at"]),
        "completedAt": _iso(t["completed_at"]),
        "progress": _progress(t["progress_completed"], t["progress_total"]),
        "rateBytesPerSecond": t["rate"],
        "etaSeconds": t["eta_seconds"],
        "observedAt": _iso(t["observed_at"]),
        "error": t["error"],
    }


def _step_view(s: Mapping[Any, Any], tasks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": s["step"],
        "state": s["state"],
        "attempt": s["attempt"],
        "startedAt": _iso(s["started_at"]),
        "completedAt": _iso(s["completed_at"]),
        "progress": _progress(s["progress_completed"], s["progress_total"]),
        "error": s["error"],
        "detail": s["detail"],
        "tasks": tasks,
    }


async def pipelines(conn: Conn, keys: Iterable[VmKey]) -> dict[VmKey, list[dict[str, Any]]]:
    """The ordered steps (with their tasks) of each ``(migration_id, vm_id)``: two queries."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    s, t = db.steps, db.tasks
    tasks: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    task_rows = await conn.execute(
        select(t)
        .where(tuple_(t.c.migration_id, t.c.vm_id).in_(wanted))
        .order_by(t.c.migration_id, t.c.vm_id, t.c.step, t.c.name, t.c.task)
    )
    for r in task_rows.mappings():
        tasks[(r["migration_id"], r["vm_id"], r["step"])].append(_task_view(r))
    result: dict[VmKey, list[dict[str, Any]]] = {k: [] for k in wanted}
    step_rows = await conn.execute(
        select(s)
        .where(tuple_(s.c.migration_id, s.c.vm_id).in_(wanted))
        .order_by(s.c.migration_id, s.c.vm_id, s.c.position, s.c.step)
    )
    for r in step_rows.mappings():
        key = (r["migration_id"], r["vm_id"])
        result[key].append(_step_view(r, tasks.get((*key, r["step"]), [])))
    return result


async def vm_status(
    conn: Conn, plan_id: str, vm_id: str, migration_id: str | None = None
) -> dict[str, Any] | None:
    """One VM with its pipeline: in ``migration_id``, or else in the plan's latest
    migration that has it (a re-run leaves out VMs that already succeeded)."""
    v, m = db.vms, db.migrations
    query = (
        select(v, m.c.number)
        .join(m, m.c.id == v.c.migration_id)
        .where(v.c.plan_id == plan_id, v.c.vm_id == vm_id)
    )
    if migration_id is not None:
        query = query.where(v.c.migration_id == migration_id)
    row = (await conn.execute(query.order_by(m.c.number.desc()).limit(1))).mappings().first()
    if row is None:
        return None
    key = (row["migration_id"], row["vm_id"])
    pipeline = (await pipelines(conn, [key]))[key]
    waiting = next(
        (w for s in pipeline if (w := waiting_view(s["name"], s["state"], s["detail"]))), None
    )
    view = vm_summary(row, waiting)
    view["migrationNumber"] = row["number"]
    view["pipeline"] = pipeline
    return view


def encode_cursor(vm_id: str) -> str:
    return base64.urlsafe_b64encode(vm_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        vm_id = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        vm_id = ""
    if not vm_id or encode_cursor(vm_id) != cursor:
        raise BadCursor("not a cursor of this list; use the 'next' of a page")
    return vm_id


async def list_vms(
    conn: Conn,
    plan_id: str,
    migration_id: str | None,
    phase: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    """A page of a migration's VMs (summaries, by VM id), ``next`` the cursor of the next
    page; an unstarted plan (``migration_id`` None) has none."""
    if migration_id is None:
        return {"migrationId": None, "items": [], "next": None, "total": 0}
    v = db.vms
    where = [v.c.plan_id == plan_id, v.c.migration_id == migration_id]
    if phase is not None:
        where.append(v.c.phase == phase)
    total = await conn.scalar(select(func.count()).select_from(v).where(*where))
    query = select(v).where(*where)
    if cursor is not None:
        query = query.where(v.c.vm_id > decode_cursor(cursor))
    rows = (await conn.execute(query.order_by(v.c.vm_id).limit(limit + 1))).mappings().all()
    page = rows[:limit]
    waiting = await waits(conn, page)
    items = [vm_summary(r, waiting.get((r["migration_id"], r["vm_id"]))) for r in page]
    more = len(rows) > limit
    return {
        "migrationId": migration_id,
        "items": items,
        "next": encode_cursor(rows[limit - 1]["vm_id"]) if more else None,
        "total": int(total or 0),
    }
