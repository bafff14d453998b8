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
- A step's ``detail`` takes the keys of events not behind it. A VM that waits to be admitted
  (or for the cutover) gets its first step's event, Pending, with ``detail.waiting`` (why,
  its place, an estimated start) and a ``note``: each copy replaces the last, but never
  with an older one (``waiting.observedAt`` keeps the event's time), and once the step
  leaves Pending the wait is dropped, with its note unless the event brought a new one.
  A warm step's ``detail.precopy`` (``{number, bytes, nextAt, running}``) is likewise never
  replaced by an earlier precopy's within one attempt.
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

Cost: a step event is the inbox claim and three round trips (lock the VM; read its steps,
with the tasks of the event's step; one statement writing the step, the task and the VM,
each only if it changed); the step's progress is summed from the task rows read under the
lock, as ``RESUM_STEPS`` does in SQL for the follower. ``VmFinished`` adds the plan lock,
the recount and the ``PLAN_STATUS`` row. The statements are in ``statusrows``, compiled once
and run on asyncpg: see there, and ``docs/planner-performance.md``, for why.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.planner import statusrows as rows
from services.planner.statusrows import STATE_COLUMNS as _ROW
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
from shared.pipeline import FINAL_STEP_STATES, PLAN_VM_FINAL, PlanVmPhase

log = logging.getLogger("hoist.planner.projecting")

#: Between two final states of one attempt, the one that wins (whatever order they came in).
_PRECEDENCE: dict[str, int] = {
    StepState.SKIPPED: 0,
    StepState.COMPLETED: 1,
    StepState.CANCELED: 2,
    StepState.FAILED: 3,
}
#: A migration, and then its plan, ends in the outcomes of its VMs.
_ENDED = PLAN_VM_FINAL


def order(state: str, attempt: int) -> tuple[int, int, int]:
    """How far a step or task got: events only ever move it forward in this order."""
    rank = 2 if state in FINAL_STEP_STATES else (1 if state == StepState.RUNNING else 0)
    return (attempt, rank, _PRECEDENCE.get(state, 0))


def _earliest(*values: datetime | None) -> datetime | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


def merge(stored: Mapping[str, Any], ev: VmStepChanged, at: datetime) -> dict[str, Any]:
    """The row (``_ROW`` columns) after ``ev``; ``at`` (the event's time) stands in for a
    start or completion time the event lacks."""
    row = {k: stored[k] for k in _ROW}
    state = ev.state.value
    final = state in FINAL_STEP_STATES
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
            keep = row["completed_at"] if row["state"] in FINAL_STEP_STATES else None
            row.update(state=state, completed_at=completed or keep, error=error)
        elif new == old:  # the same fact again: fill what the first copy lacked
            row["completed_at"] = row["completed_at"] or completed
            row["error"] = row["error"] or error
        if done is not None:
            row["progress_completed"] = max(row["progress_completed"], done)
        if total:
            row["progress_total"] = max(row["progress_total"], total)
    if row["state"] not in FINAL_STEP_STATES:
        row["completed_at"] = row["error"] = None
    if row["state"] == StepState.COMPLETED:
        row["progress_completed"] = max(row["progress_completed"], row["progress_total"])
    return row


def step_detail(
    stored: Mapping[str, Any], state: str, ev: VmStepChanged, at: datetime
) -> dict[str, Any]:
    """A step's ``detail`` after ``ev`` (``state``: the step's state after it).

    A wait (``waiting``) is replaced by a newer one only (by the event's time ``at``, kept
    as ``waiting.observedAt``), so a redelivered "3rd in line" never hides "1st in line";
    and it ends when the step leaves Pending, with the note that described it."""
    old: dict[str, Any] = dict(stored["detail"] or {})
    detail = old
    ahead = order(ev.state, ev.attempt) >= order(stored["state"], stored["attempt"])
    if ev.detail and ahead and not _older_wait(old, ev.detail, at):
        detail = {**old, **ev.detail}
        if isinstance(detail.get("waiting"), dict) and "waiting" in ev.detail:
            detail["waiting"] = {**detail["waiting"], "observedAt": at.isoformat()}
        if ev.attempt == stored["attempt"] and _older_precopy(old, ev.detail):
            detail["precopy"] = old["precopy"]
    if state != StepState.PENDING and "waiting" in detail:
        detail = {k: v for k, v in detail.items() if k != "waiting"}
        if "note" not in ev.detail:
            detail.pop("note", None)
    return detail


def _precopy_rank(precopy: Mapping[str, Any]) -> tuple[int, bool, int]:
    """Later precopies rank higher; within one, its end above its run, more bytes above
    fewer."""
    return (
        int(precopy.get("number") or 0),
        not precopy.get("running", False),
        int(precopy.get("bytes") or 0),
    )


def _older_precopy(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """``new`` reports an earlier precopy (or an earlier moment of one) than ``old`` shows:
    a WarmPrecopy step stays Running through every precopy, so its events share a rank
    and only the precopy's own number orders them."""
    shown, got = old.get("precopy"), new.get("precopy")
    if not isinstance(shown, dict) or not isinstance(got, dict):
        return False
    try:
        return _precopy_rank(got) < _precopy_rank(shown)
    except (TypeError, ValueError):  # not numbers: the newest event wins, as for other keys
        return False


def _older_wait(old: Mapping[str, Any], new: Mapping[str, Any], at: datetime) -> bool:
    """``new`` reports a wait older than the one ``old`` shows."""
    shown = old.get("waiting")
    if "waiting" not in new or not isinstance(shown, dict):
        return False
    try:
        return datetime.fromisoformat(str(shown.get("observedAt"))) > at
    except (ValueError, TypeError):  # not a time, or one without a timezone
        return False


def current_step(steps: Sequence[Mapping[str, Any]]) -> str | None:
    """The step a VM is at: the furthest Running one, else the furthest Failed one, else
    the furthest it completed or saw canceled; None before it starts."""
    for states in (
        (StepState.RUNNING,),
        (StepState.FAILED,),
        (StepState.COMPLETED, StepState.CANCELED),
    ):
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
        key = {"mid": ev.migration_id, "vid": ev.vm_id}
        vm = await rows.LOCK_VM_FOR_STEP.first(session, key)
        if vm is None:
            log.debug("step of unknown VM %s/%s ignored", ev.migration_id, ev.vm_id)
            return
        name = ev.step.value
        steps, tasks = await rows.pipeline(session, key, name, ev.task)
        step = steps.get(name)
        if step is None:  # a step the pipeline did not foresee: shown where it runs
            step = await rows.insert_step(session, ev)
        new = dict(step)
        task: dict[str, Any] | None = None
        new_task: dict[str, Any] | None = None
        if ev.task is None:
            new.update(merge(step, ev, at))
            new["detail"] = step_detail(step, new["state"], ev, at)
        else:
            task = tasks.get(ev.task) or await rows.insert_task(session, ev)
            new_task = tasks[ev.task] = _merge_task(task, ev, at)
        if tasks:  # a step with tasks takes its progress from them (as RESUM_STEPS does)
            done = sum(t["progress_completed"] for t in tasks.values())
            total = sum(t["progress_total"] for t in tasks.values())
            new["progress_completed"] = (
                max(done, total) if new["state"] == StepState.COMPLETED else done
            )
            new["progress_total"] = total
        steps[name] = new
        vm_new = _vm_row(
            vm, list(steps.values()), started=ev.started_at, active=ev.state != StepState.PENDING
        )
        step_changed = any(new[k] != step[k] for k in rows.STEP_WRITTEN)
        task_changed = (
            task is not None
            and new_task is not None
            and (any(new_task[k] != task[k] for k in rows.TASK_WRITTEN))
        )
        if (step_changed or task_changed) and vm_new is None:
            # The VM's revision covers its pipeline (streams and ETags follow it): rewrite
            # the VM as it is, for a new revision.
            vm_new = {k: vm[k] for k in rows.VM_STEPPED}
        if vm_new is not None:
            await rows.write_step(
                session,
                {"k_mid": ev.migration_id, "k_vid": ev.vm_id, "k_step": name, "k_task": ev.task},
                new if step_changed else None,
                new_task if task_changed else None,
                vm_new,
            )

    # --- outcomes --------------------------------------------------------------------------

    async def _finished(self, ev: VmFinished, at: datetime, session: AsyncSession) -> None:
        # The plan first: starting and canceling lock the plan, then its VMs.
        plan = await rows.LOCK_PLAN.first(session, {"pid": ev.plan_id})
        key = {"mid": ev.migration_id, "vid": ev.vm_id}
        vm = await rows.LOCK_VM.first(session, key)
        if vm is None:
            log.debug("outcome of unknown VM %s/%s ignored", ev.migration_id, ev.vm_id)
            return
        error = ev.error.model_dump(mode="json") if ev.error else None
        target = ev.target_vm.model_dump(mode="json") if ev.target_vm else None
        if vm["phase"] in PLAN_VM_FINAL:
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
                await rows.update_vm(session, {**vm, **filled})
            return
        steps, _ = await rows.pipeline(session, key, None, None)
        vm_new = _vm_row(
            vm,
            list(steps.values()),
            final={
                "phase": ev.outcome.value,
                "completed_at": at,
                "error": error,
                "target_vm": target,
                "rate": None,
                "eta_seconds": None,
            },
        )
        if vm_new is not None:
            await rows.update_vm(session, vm_new)
        await self._recount(session, plan, ev.migration_id, at)

    async def _recount(
        self, session: AsyncSession, plan: dict[str, Any] | None, migration_id: str, at: datetime
    ) -> None:
        mig = await rows.LOCK_MIGRATION.first(session, {"id": migration_id})
        assert mig is not None  # its VM row exists, and references it
        counted = await rows.COUNT_PHASES.rows(session, {"mid": migration_id})
        by_phase: dict[str, int] = {str(r["phase"]): int(r["n"]) for r in counted}
        counts = {
            "vms_succeeded": by_phase.get(PlanVmPhase.SUCCEEDED, 0),
            "vms_failed": by_phase.get(PlanVmPhase.FAILED, 0),
            "vms_canceled": by_phase.get(PlanVmPhase.CANCELED, 0),
        }
        values: dict[str, Any] = dict(counts)
        unfinished = sum(n for p, n in by_phase.items() if p not in PLAN_VM_FINAL)
        if unfinished == 0 and mig["phase"] not in _ENDED:
            ended = (
                PlanVmPhase.FAILED
                if counts["vms_failed"]
                else (PlanVmPhase.CANCELED if counts["vms_canceled"] else PlanVmPhase.SUCCEEDED)
            )
            values["phase"] = ended.value
            last = await rows.LAST_COMPLETED.first(session, {"mid": migration_id})
            values["completed_at"] = (last or {}).get("last") or at
        if all(mig[k] == values[k] for k in values):
            return
        mig.update(values)
        await rows.UPDATE_MIGRATION.run(
            session, {"k_id": migration_id} | {f"p_{k}": mig[k] for k in rows.MIGRATION_WRITTEN}
        )
        await self._plan_status(session, plan, mig, at)

    async def _plan_status(
        self, session: AsyncSession, plan: dict[str, Any] | None, mig: dict[str, Any], at: datetime
    ) -> None:
        # ``plan`` was locked (and read) first thing in this transaction, so it is current.
        if plan is None or plan["migration_id"] != mig["id"]:
            return  # a later migration of the plan is the one it shows now
        phase = mig["phase"] if mig["phase"] in _ENDED else plan["phase"]
        if phase != plan["phase"]:
            await rows.UPDATE_PLAN_PHASE.run(
                session, {"k_id": plan["id"], "p_phase": phase, "p_updated_at": at}
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
    if mig["phase"] not in _ENDED:
        return [Condition(type="Executing", status=True, reason="Running", message=summary)]
    return [
        Condition(type="Executing", status=False, reason="Finished", message=summary),
        Condition(
            type=mig["phase"], status=True, reason=mig["phase"], message=summary, last_transition=at
        ),
    ]


def _merge_task(task: dict[str, Any], ev: VmStepChanged, at: datetime) -> dict[str, Any]:
    """The task row after ``ev``."""
    new = {**task, **merge(task, ev, at)}
    if new["attempt"] > task["attempt"] and ev.started_at:
        # Samples taken before this attempt started belong to the last one.
        new["observed_at"] = max(task["observed_at"] or ev.started_at, ev.started_at)
    return new


def _vm_row(
    vm: dict[str, Any],
    steps: list[dict[str, Any]],
    *,
    started: datetime | None = None,
    active: bool = False,
    final: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The VM row derived from its ``steps`` (as they are after this event) and ``final``
    (what ``VmFinished`` says), or None if nothing changes; ``active``: a step or a task of
    it left Pending."""
    values: dict[str, Any] = dict(final or {})
    phase = values.get("phase", vm["phase"])
    if phase == PlanVmPhase.PENDING and (
        active or any(r["state"] != StepState.PENDING for r in steps)
    ):
        phase = PlanVmPhase.RUNNING.value
    values["phase"] = phase
    values["step"] = current_step(steps)
    values["started_at"] = _earliest(vm["started_at"], started, *(r["started_at"] for r in steps))
    transfer = next((r for r in steps if r["step"] == Step.DISK_TRANSFER), None)
    total = vm["bytes_total"]
    if transfer is not None and transfer["progress_total"] > 0:
        total = transfer["progress_total"]
    values["bytes_total"] = total
    if phase == PlanVmPhase.SUCCEEDED:
        values["bytes_done"] = total
    elif transfer is not None:
        values["bytes_done"] = transfer["progress_completed"]
    if all(vm[k] == val for k, val in values.items()):
        return None
    return {**vm, **values}
