"""Projecting the orchestrator's step and outcome events into the planner's status tables.

The orchestrator publishes ``VmStepChanged`` (a step, or one task of a step, changed state)
and ``VmFinished`` on JetStream. They may arrive twice (redelivery, a republished outbox) or
out of order (several consumers in flight, retries with backoff), so every rule here is
monotonic and gives the same rows whatever order the same events come in:

- A step or task is ordered by ``(attempt, rank)``: Pending < Running < a final state, and a
  higher attempt supersedes everything of a lower one. Between two final states of one
  attempt (which the orchestrator never sends, but a bug might) a fixed precedence decides
  (Failed > Canceled > Completed > Skipped), so the result still does not depend on order.
  A lower event changes nothing but ``started_at``, which keeps the earliest known time of
  the attempt; progress within an attempt only grows; a Completed step or task is complete.
- A step that has tasks (DiskAllocation, DiskTransfer) takes its progress from them: the
  sum of its tasks' ``{completed, total}``.
- A VM is Pending until any of its steps (or tasks) leaves Pending, then Running; only
  ``VmFinished`` makes it final (a Failed step may be retried), and a final VM never changes
  phase again. Its current ``step`` is the furthest Running step, else the furthest Failed
  one, else the furthest it completed (or saw canceled). Its ``started_at`` is the earliest
  start of any event, its bytes are the DiskTransfer step's (all of them once it Succeeded).
- Each ``VmFinished`` recounts the migration; once every VM is final the migration (and its
  plan, if the plan still points at it) becomes Failed if any failed, else Canceled if any
  was canceled, else Succeeded; each change of the counts or phase goes out as
  ``PLAN_STATUS`` with an event id made of the counts, so the same fact is published once.

Locks, always in this order: plan, VM, migration. A step event locks its VM row
(``FOR UPDATE``) before its steps and tasks, so two events of one VM never interleave;
``VmFinished`` locks the plan row, then the VM, then the migration (so concurrent outcomes
count each other), as starting and canceling a plan lock the plan before its VMs. The
progress follower locks VM rows (in key order) before their tasks.

Unknown migrations and VMs (a plan deleted meanwhile) are ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.planner import db
from services.planner.launching import POSITION, next_revision
from shared import catalog
from shared import envelope as env
from shared.db.messaging import Outbox
from shared.payloads import (
    Condition,
    PlanStatusChanged,
    Step,
    StepState,
    VmFinished,
    VmStepChanged,
)

log = logging.getLogger("hoist.planner.projecting")

FINAL_STATES = frozenset({"Completed", "Failed", "Skipped", "Canceled"})
FINAL_PHASES = ("Succeeded", "Failed", "Canceled")
_PRECEDENCE = {"Skipped": 0, "Completed": 1, "Canceled": 2, "Failed": 3}
_ROW = (
    "state",
    "attempt",
    "started_at",
    "completed_at",
    "progress_completed",
    "progress_total",
    "error",
)

RESUM_STEPS = text(
    """
    UPDATE planner.steps AS s SET
        progress_completed = CASE WHEN s.state = 'Completed'
                                  THEN greatest(t.done, t.total) ELSE t.done END,
        progress_total = t.total, updated_at = now()
    FROM (
        SELECT k.migration_id, k.vm_id, k.step,
               CAST(sum(x.progress_completed) AS bigint) AS done,
               CAST(sum(x.progress_total) AS bigint) AS total
        FROM unnest(CAST(:migration_id AS text[]), CAST(:vm_id AS text[]),
                    CAST(:step AS text[])) AS k(migration_id, vm_id, step)
        JOIN planner.tasks AS x
          ON x.migration_id = k.migration_id AND x.vm_id = k.vm_id AND x.step = k.step
        GROUP BY k.migration_id, k.vm_id, k.step
    ) AS t
    WHERE s.migration_id = t.migration_id AND s.vm_id = t.vm_id AND s.step = t.step
      AND (s.progress_completed, s.progress_total) IS DISTINCT FROM (
          CASE WHEN s.state = 'Completed' THEN greatest(t.done, t.total) ELSE t.done END,
          t.total)
    """
)
"""A step with tasks gets their sums as its progress (batched: one row per array entry)."""


def order(state: str, attempt: int) -> tuple[int, int, int]:
    """How far a step or task got: events only ever move it forward in this order."""
    rank = 2 if state in FINAL_STATES else (1 if state == StepState.RUNNING else 0)
    return (attempt, rank, _PRECEDENCE.get(state, 0))


def _earliest(*values: datetime | None) -> datetime | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


def merge(stored: Mapping[str, Any], ev: VmStepChanged, at: datetime) -> dict[str, Any]:
    """The row (``_ROW`` columns) after ``ev``; ``at`` (the event's time) stands in for a
    start or completion time the event lacks."""
    row = {k: stored[k] for k in _ROW}
    state = ev.state.value
    final = state in FINAL_STATES
    started = ev.started_at or (at if state == StepState.RUNNING else None)
    completed = (ev.completed_at or at) if final else None
    error = ev.error.model_dump(mode="json") if ev.error else None
    done = ev.progress.completed if ev.progress else None
    total = ev.progress.total if ev.progress else None
    if ev.attempt < row["attempt"]:
        return row
    if ev.attempt > row["attempt"]:  # a new attempt starts over
        row.update(state=state, attempt=ev.attempt, started_at=started, completed_at=completed)
        row.update(error=error, progress_completed=done or 0)
        if total:
            row["progress_total"] = total
    else:
        row["started_at"] = _earliest(row["started_at"], started)
        new, old = order(state, ev.attempt), order(row["state"], row["attempt"])
        if new > old:
            keep = row["completed_at"] if row["state"] in FINAL_STATES else None
            row.update(state=state, completed_at=completed or keep, error=error)
        elif new == old:  # the same fact again: fill what the first copy lacked
            row["completed_at"] = row["completed_at"] or completed
            row["error"] = row["error"] or error
        if done is not None:
            row["progress_completed"] = max(row["progress_completed"], done)
        if total:
            row["progress_total"] = max(row["progress_total"], total)
    if row["state"] not in FINAL_STATES:
        row["completed_at"] = row["error"] = None
    if row["state"] == StepState.COMPLETED:
        row["progress_completed"] = max(row["progress_completed"], row["progress_total"])
    return row


def current_step(steps: Sequence[Mapping[str, Any]]) -> str | None:
    """The step a VM is at: the furthest Running one, else the furthest Failed one, else
    the furthest it completed or saw canceled; None before it starts."""
    for states in (("Running",), ("Failed",), ("Completed", "Canceled")):
        found = [s for s in steps if s["state"] in states]
        if found:
            return str(max(found, key=lambda s: s["position"])["step"])
    return None


class Projector:
    """Applies ``VM_STEP_CHANGED`` and ``VM_FINISHED`` to the status tables (see module doc).

    Wrap ``apply`` with ``shared.db.messaging.idempotent`` so a redelivered event is skipped;
    ``apply`` itself is idempotent too (the same fact under another event id changes nothing).
    """

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def apply(self, event: env.Envelope[Any], session: AsyncSession) -> None:
        data = event.data
        if isinstance(data, VmStepChanged):
            await self._step(data, event.time, session)
        elif isinstance(data, VmFinished):
            await self._finished(data, event.time, session)

    # --- steps and tasks -------------------------------------------------------------------

    async def _step(self, ev: VmStepChanged, at: datetime, session: AsyncSession) -> None:
        vm = await _lock_vm(session, ev.migration_id, ev.vm_id)
        if vm is None:
            log.debug("step of unknown VM %s/%s ignored", ev.migration_id, ev.vm_id)
            return
        key = {"migration_id": ev.migration_id, "vm_id": ev.vm_id, "step": ev.step.value}
        step = await _row(session, db.steps, key)
        if step is None:  # a step the pipeline did not foresee: shown where it runs
            step = {"state": "Pending", "attempt": 1, "progress_completed": 0}
            step |= {"progress_total": 0, "started_at": None, "completed_at": None}
            step |= {"error": None, "detail": {}}
            await session.execute(
                insert(db.steps).values(
                    **key, position=POSITION.get(ev.step.value, len(POSITION)), state="Pending"
                )
            )
        if ev.task is None:
            new = merge(step, ev, at)
            if ev.detail and order(ev.state, ev.attempt) >= order(step["state"], step["attempt"]):
                new["detail"] = {**(step["detail"] or {}), **ev.detail}
            await _store(session, db.steps, key, step, new)
        else:
            tkey = {**key, "task": ev.task}
            task = await _row(session, db.tasks, tkey)
            if task is None:
                name = str(ev.detail.get("name") or ev.task)
                await session.execute(
                    insert(db.tasks).values(**tkey, name=name[:253], state="Pending")
                )
                task = {k: None for k in (*_ROW, "observed_at")}
                task |= {"state": "Pending", "attempt": 1}
                task |= {"progress_completed": 0, "progress_total": 0}
            new = merge(task, ev, at)
            if new["attempt"] > task["attempt"] and ev.started_at:
                # Samples taken before this attempt started belong to the last one.
                new["observed_at"] = max(task["observed_at"] or ev.started_at, ev.started_at)
            await _store(session, db.tasks, tkey, task, new)
        await session.execute(
            RESUM_STEPS,
            {"migration_id": [ev.migration_id], "vm_id": [ev.vm_id], "step": [ev.step.value]},
        )
        await _refresh_vm(session, vm, started=ev.started_at, active=ev.state != StepState.PENDING)

    # --- outcomes --------------------------------------------------------------------------

    async def _finished(self, ev: VmFinished, at: datetime, session: AsyncSession) -> None:
        # The plan first: starting and canceling lock the plan, then its VMs.
        plan = select(db.plans.c.id).where(db.plans.c.id == ev.plan_id).with_for_update()
        await session.execute(plan)
        vm = await _lock_vm(session, ev.migration_id, ev.vm_id)
        if vm is None:
            log.debug("outcome of unknown VM %s/%s ignored", ev.migration_id, ev.vm_id)
            return
        error = ev.error.model_dump(mode="json") if ev.error else None
        target = ev.target_vm.model_dump(mode="json") if ev.target_vm else None
        if vm["phase"] in FINAL_PHASES:
            if vm["phase"] != ev.outcome.value:
                log.warning(
                    "VM %s/%s already %s; outcome %s ignored",
                    ev.migration_id,
                    ev.vm_id,
                    vm["phase"],
                    ev.outcome.value,
                )
                return
            filled = {
                "error": vm["error"] or error,
                "target_vm": vm["target_vm"] or target,
                "completed_at": vm["completed_at"] or at,
            }
            if any(filled[k] != vm[k] for k in filled):
                await _update_vm(session, vm, filled)
            return
        await _refresh_vm(
            session,
            vm,
            final={
                "phase": ev.outcome.value,
                "completed_at": at,
                "error": error,
                "target_vm": target,
                "rate": None,
                "eta_seconds": None,
            },
        )
        await self._recount(session, ev.migration_id, at)

    async def _recount(self, session: AsyncSession, migration_id: str, at: datetime) -> None:
        m, v = db.migrations, db.vms
        mig = await _row(session, m, {"id": migration_id}, lock=True)
        assert mig is not None  # its VM row exists, and references it
        by_phase: dict[str, int] = dict(
            (
                await session.execute(
                    select(v.c.phase, func.count())
                    .where(v.c.migration_id == migration_id)
                    .group_by(v.c.phase)
                )
            ).all()
        )
        counts = {
            "vms_succeeded": by_phase.get("Succeeded", 0),
            "vms_failed": by_phase.get("Failed", 0),
            "vms_canceled": by_phase.get("Canceled", 0),
        }
        values: dict[str, Any] = dict(counts)
        unfinished = sum(n for p, n in by_phase.items() if p not in FINAL_PHASES)
        if unfinished == 0 and mig["phase"] not in FINAL_PHASES:
            values["phase"] = (
                "Failed"
                if counts["vms_failed"]
                else ("Canceled" if counts["vms_canceled"] else "Succeeded")
            )
            last = select(func.max(v.c.completed_at)).where(v.c.migration_id == migration_id)
            values["completed_at"] = (await session.scalar(last)) or at
        if all(mig[k] == values[k] for k in values):
            return
        rev = await next_revision(session)
        stmt = update(m).where(m.c.id == migration_id).values(**values, revision=rev)
        await session.execute(stmt)
        await self._plan_status(session, {**mig, **values}, at)

    async def _plan_status(self, session: AsyncSession, mig: dict[str, Any], at: datetime) -> None:
        p = db.plans
        key = {"id": mig["plan_id"], "migration_id": mig["id"]}
        plan = await _row(session, p, key, lock=True)
        if plan is None:  # a later migration of the plan is the one it shows now
            return
        phase = mig["phase"] if mig["phase"] in FINAL_PHASES else plan["phase"]
        if phase != plan["phase"]:
            await session.execute(
                update(p)
                .where(p.c.id == plan["id"])
                .values(phase=phase, revision=await next_revision(session), updated_at=at)
            )
        status = PlanStatusChanged(
            plan_id=plan["id"],
            migration_id=mig["id"],
            phase=phase,
            vms_total=mig["vms_total"],
            vms_succeeded=mig["vms_succeeded"],
            vms_failed=mig["vms_failed"],
            vms_canceled=mig["vms_canceled"],
            conditions=conditions(mig, at),
        )
        # The counts only grow and the phase changes once: together they name the fact.
        fact = (mig["id"], phase, mig["vms_succeeded"], mig["vms_failed"], mig["vms_canceled"])
        await self.outbox.add(
            session,
            catalog.PLAN_STATUS,
            status,
            event_id="plan-status:" + ":".join(str(x) for x in fact),
        )


def conditions(mig: Mapping[str, Any], at: datetime) -> list[Condition]:
    """Kubernetes-style conditions of a migration: Executing while VMs remain, then its
    final phase as a condition of its own."""
    total = mig["vms_total"]
    ended = mig["vms_succeeded"] + mig["vms_failed"] + mig["vms_canceled"]
    summary = (
        f"{ended} of {total} VMs finished: {mig['vms_succeeded']} succeeded, "
        f"{mig['vms_failed']} failed, {mig['vms_canceled']} canceled"
    )
    if mig["phase"] not in FINAL_PHASES:
        return [Condition(type="Executing", status=True, reason="Running", message=summary)]
    return [
        Condition(type="Executing", status=False, reason="Finished", message=summary),
        Condition(
            type=mig["phase"], status=True, reason=mig["phase"], message=summary, last_transition=at
        ),
    ]


# --- rows ----------------------------------------------------------------------------------


async def _lock_vm(session: AsyncSession, migration_id: str, vm_id: str) -> dict[str, Any] | None:
    return await _row(session, db.vms, {"migration_id": migration_id, "vm_id": vm_id}, lock=True)


async def _row(
    session: AsyncSession, table: Any, key: dict[str, str], *, lock: bool = False
) -> dict[str, Any] | None:
    query = select(table).where(*(table.c[k] == v for k, v in key.items()))
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).mappings().first()
    return dict(row) if row is not None else None


async def _store(
    session: AsyncSession,
    table: Any,
    key: dict[str, str],
    old: Mapping[str, Any],
    new: dict[str, Any],
) -> None:
    changed = {k: v for k, v in new.items() if old.get(k) != v}
    if changed:
        await session.execute(
            update(table)
            .where(*(table.c[k] == v for k, v in key.items()))
            .values(**changed, updated_at=text("now()"))
        )


async def _refresh_vm(
    session: AsyncSession,
    vm: dict[str, Any],
    *,
    started: datetime | None = None,
    active: bool = False,
    final: dict[str, Any] | None = None,
) -> None:
    """Derive the VM row from its steps (and ``final``: what ``VmFinished`` says);
    ``active``: a step or a task of it left Pending."""
    s = db.steps
    steps = [
        dict(r)
        for r in (
            await session.execute(
                select(s).where(s.c.migration_id == vm["migration_id"], s.c.vm_id == vm["vm_id"])
            )
        ).mappings()
    ]
    values: dict[str, Any] = dict(final or {})
    phase = values.get("phase", vm["phase"])
    if phase == "Pending" and (active or any(r["state"] != StepState.PENDING for r in steps)):
        phase = "Running"
    values["phase"] = phase
    values["step"] = current_step(steps)
    values["started_at"] = _earliest(vm["started_at"], started, *(r["started_at"] for r in steps))
    transfer = next((r for r in steps if r["step"] == Step.DISK_TRANSFER), None)
    total = vm["bytes_total"]
    if transfer is not None and transfer["progress_total"] > 0:
        total = transfer["progress_total"]
    values["bytes_total"] = total
    if phase == "Succeeded":
        values["bytes_done"] = total
    elif transfer is not None:
        values["bytes_done"] = transfer["progress_completed"]
    if any(vm[k] != val for k, val in values.items()):
        await _update_vm(session, vm, values)


async def _update_vm(session: AsyncSession, vm: Mapping[str, Any], values: dict[str, Any]) -> None:
    v = db.vms
    await session.execute(
        update(v)
        .where(v.c.migration_id == vm["migration_id"], v.c.vm_id == vm["vm_id"])
        .values(**values, revision=await next_revision(session), updated_at=text("now()"))
    )
