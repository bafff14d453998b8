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

from sqlalchemy import (
    Boolean,
    String,
    and_,
    bindparam,
    case,
    func,
    insert,
    null,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from services.planner import db
from services.planner.launching import POSITION
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
        key = {"mid": ev.migration_id, "vid": ev.vm_id}
        vm = await _first(session, LOCK_VM_FOR_STEP, key)
        if vm is None:
            log.debug("step of unknown VM %s/%s ignored", ev.migration_id, ev.vm_id)
            return
        name = ev.step.value
        steps, tasks = await _pipeline(session, key, name, ev.task)
        step = steps.get(name)
        if step is None:  # a step the pipeline did not foresee: shown where it runs
            step = await _insert_step(session, ev)
        new = dict(step)
        task: dict[str, Any] | None = None
        new_task: dict[str, Any] | None = None
        if ev.task is None:
            new.update(merge(step, ev, at))
            if ev.detail and order(ev.state, ev.attempt) >= order(step["state"], step["attempt"]):
                new["detail"] = {**(step["detail"] or {}), **ev.detail}
        else:
            task = tasks.get(ev.task) or await _insert_task(session, ev)
            new_task = tasks[ev.task] = _merge_task(task, ev, at)
        if tasks:  # a step with tasks takes its progress from them (as RESUM_STEPS does)
            done = sum(t["progress_completed"] for t in tasks.values())
            total = sum(t["progress_total"] for t in tasks.values())
            new["progress_completed"] = max(done, total) if new["state"] == "Completed" else done
            new["progress_total"] = total
        steps[name] = new
        vm_new = _vm_row(
            vm, list(steps.values()), started=ev.started_at, active=ev.state != StepState.PENDING
        )
        writes = {
            "s_write": any(new[k] != step[k] for k in _STEP_WRITTEN),
            "t_write": task is not None
            and new_task is not None
            and any(new_task[k] != task[k] for k in _TASK_WRITTEN),
            "v_write": vm_new is not None,
        }
        if not any(writes.values()):
            return  # the same fact again
        after = new_task or {}
        vm_after = vm_new or vm
        await session.execute(
            WRITE_STEP,
            writes
            | {"k_mid": ev.migration_id, "k_vid": ev.vm_id, "k_step": name, "k_task": ev.task}
            | {f"s_{k}": new[k] for k in _STEP_WRITTEN}
            | {f"t_{k}": after.get(k) for k in _TASK_WRITTEN}
            | {f"v_{k}": vm_after[k] for k in _VM_STEPPED},
        )

    # --- outcomes --------------------------------------------------------------------------

    async def _finished(self, ev: VmFinished, at: datetime, session: AsyncSession) -> None:
        # The plan first: starting and canceling lock the plan, then its VMs.
        plan = await _first(session, LOCK_PLAN, {"pid": ev.plan_id})
        key = {"mid": ev.migration_id, "vid": ev.vm_id}
        vm = await _first(session, LOCK_VM, key)
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
        steps, _ = await _pipeline(session, key, None, None)
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
            await _update_vm(session, vm, vm_new)
        await self._recount(session, plan, ev.migration_id, at)

    async def _recount(
        self, session: AsyncSession, plan: dict[str, Any] | None, migration_id: str, at: datetime
    ) -> None:
        mig = await _first(session, LOCK_MIGRATION, {"id": migration_id})
        assert mig is not None  # its VM row exists, and references it
        rows = (await session.execute(COUNT_PHASES, {"mid": migration_id})).all()
        by_phase: dict[str, int] = {str(phase): int(n) for phase, n in rows}
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
            values["completed_at"] = (
                await session.scalar(LAST_COMPLETED, {"mid": migration_id})
            ) or at
        if all(mig[k] == values[k] for k in values):
            return
        mig.update(values)
        await session.execute(
            UPDATE_MIGRATION, {"k_id": migration_id} | {f"p_{k}": mig[k] for k in _MIG_WRITTEN}
        )
        await self._plan_status(session, plan, mig, at)

    async def _plan_status(
        self, session: AsyncSession, plan: dict[str, Any] | None, mig: dict[str, Any], at: datetime
    ) -> None:
        # ``plan`` was locked (and read) first thing in this transaction, so it is current.
        if plan is None or plan["migration_id"] != mig["id"]:
            return  # a later migration of the plan is the one it shows now
        phase = mig["phase"] if mig["phase"] in FINAL_PHASES else plan["phase"]
        if phase != plan["phase"]:
            await session.execute(
                UPDATE_PLAN_PHASE, {"k_id": plan["id"], "p_phase": phase, "p_updated_at": at}
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
#
# Statements are built once, here, with bound parameters: building a SQLAlchemy statement
# per event cost more CPU than the round trip it makes. An event makes four to six round
# trips (claim, lock, read the pipeline, the writes); the task rows of the event's step
# are read with the steps, in one statement after the lock.

_V, _S, _T, _M, _P = db.vms, db.steps, db.tasks, db.migrations, db.plans
_STEP_WRITTEN = (*_ROW, "detail")
_TASK_WRITTEN = (*_ROW, "observed_at")
_VM_WRITTEN = (
    "phase",
    "step",
    "started_at",
    "completed_at",
    "error",
    "target_vm",
    "bytes_done",
    "bytes_total",
    "rate",
    "eta_seconds",
)
_MIG_WRITTEN = ("vms_succeeded", "vms_failed", "vms_canceled", "phase", "completed_at")


def _param(table: Any, column: str) -> Any:
    """``:p_<column>``, typed as the column."""
    return bindparam(f"p_{column}", type_=table.c[column].type)


# A step event changes only these of its VM (not its outcome, error, target, rate or ETA).
_VM_STEPPED = ("phase", "step", "started_at", "bytes_done", "bytes_total")
LOCK_VM_FOR_STEP = (
    select(_V.c.migration_id, _V.c.vm_id, *(_V.c[k] for k in _VM_STEPPED))
    .where(_V.c.migration_id == bindparam("mid"), _V.c.vm_id == bindparam("vid"))
    .with_for_update()
)
LOCK_VM = (
    select(_V)
    .where(_V.c.migration_id == bindparam("mid"), _V.c.vm_id == bindparam("vid"))
    .with_for_update()
)
LOCK_PLAN = (
    select(_P.c.id, _P.c.migration_id, _P.c.phase)
    .where(_P.c.id == bindparam("pid"))
    .with_for_update()
)
LOCK_MIGRATION = select(*db.migration_status).where(_M.c.id == bindparam("id")).with_for_update()
# Every step of a VM, and the tasks of one of them (``with_tasks``; NULL: none). A separate
# statement from the lock: one that waited for the VM's lock would otherwise return the
# steps as they were before the holder of the lock changed them.
_STEP_READ = ("step", "position", *_ROW, "detail")
_ONE_STEP = _S.c.step == bindparam("with_tasks", type_=String)
READ_PIPELINE = (
    select(
        # error and detail of the event's step only: the others' are not needed.
        *(
            case((_ONE_STEP, _S.c[k]), else_=null()).label(k)
            if k in ("error", "detail")
            else _S.c[k]
            for k in _STEP_READ
        ),
        *(
            case((_T.c.task == bindparam("the_task", type_=String), _T.c[k]), else_=null()).label(
                f"task_{k}"
            )
            if k == "error"
            else _T.c[k].label(f"task_{k}")
            for k in ("task", *_TASK_WRITTEN)
        ),
    )
    .select_from(
        _S.outerjoin(
            _T,
            and_(
                _T.c.migration_id == _S.c.migration_id,
                _T.c.vm_id == _S.c.vm_id,
                _T.c.step == _S.c.step,
                _ONE_STEP,
            ),
        )
    )
    .where(_S.c.migration_id == bindparam("mid"), _S.c.vm_id == bindparam("vid"))
)
COUNT_PHASES = (
    select(_V.c.phase, func.count())
    .where(_V.c.migration_id == bindparam("mid"))
    .group_by(_V.c.phase)
)
LAST_COMPLETED = select(func.max(_V.c.completed_at)).where(_V.c.migration_id == bindparam("mid"))


def _set(table: Any, prefix: str, columns: Sequence[str]) -> dict[str, Any]:
    """``SET column = :<prefix><column>`` for ``columns``, typed as the columns (JSONB values
    are serialized as a plain ``values()`` would), and ``updated_at``."""
    return {
        **{k: bindparam(f"{prefix}{k}", type_=table.c[k].type) for k in columns},
        "updated_at": func.now(),
    }


# The writes of a step event in one statement: its step, its task and its VM, each only if
# its flag says it changed (data-modifying CTEs run whether or not they are referenced).
_KEY: dict[str, Any] = {
    "mid": bindparam("k_mid"),
    "vid": bindparam("k_vid"),
    "step": bindparam("k_step"),
}
WRITE_STEP = (
    update(_V)
    .where(_V.c.migration_id == _KEY["mid"], _V.c.vm_id == _KEY["vid"])
    .where(bindparam("v_write", type_=Boolean))
    .values({**_set(_V, "v_", _VM_STEPPED), "revision": db.revision_seq.next_value()})
    .add_cte(
        update(_S)
        .where(_S.c.migration_id == _KEY["mid"], _S.c.vm_id == _KEY["vid"])
        .where(_S.c.step == _KEY["step"], bindparam("s_write", type_=Boolean))
        .values(_set(_S, "s_", _STEP_WRITTEN))
        .cte("step_written")
    )
    .add_cte(
        update(_T)
        .where(_T.c.migration_id == _KEY["mid"], _T.c.vm_id == _KEY["vid"])
        .where(_T.c.step == _KEY["step"], _T.c.task == bindparam("k_task", type_=String))
        .where(bindparam("t_write", type_=Boolean))
        .values(_set(_T, "t_", _TASK_WRITTEN))
        .cte("task_written")
    )
)
UPDATE_VM = (
    update(_V)
    .where(_V.c.migration_id == bindparam("k_mid"), _V.c.vm_id == bindparam("k_vid"))
    .values({**_set(_V, "p_", _VM_WRITTEN), "revision": db.revision_seq.next_value()})
)
UPDATE_MIGRATION = (
    update(_M)
    .where(_M.c.id == bindparam("k_id"))
    .values({**{k: _param(_M, k) for k in _MIG_WRITTEN}, "revision": db.revision_seq.next_value()})
)
UPDATE_PLAN_PHASE = (
    update(_P)
    .where(_P.c.id == bindparam("k_id"))
    .values(
        phase=_param(_P, "phase"),
        updated_at=_param(_P, "updated_at"),
        revision=db.revision_seq.next_value(),
    )
)


async def _first(
    session: AsyncSession, query: Any, params: dict[str, Any]
) -> dict[str, Any] | None:
    row = (await session.execute(query, params)).mappings().first()
    return dict(row) if row is not None else None


async def _pipeline(
    session: AsyncSession, key: dict[str, str], with_tasks: str | None, task: str | None
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """A VM's steps (name -> row) and the tasks of step ``with_tasks`` (task -> row); the
    JSON columns of step ``with_tasks`` and task ``task`` only."""
    steps: dict[str, dict[str, Any]] = {}
    tasks: dict[str, dict[str, Any]] = {}
    params = {**key, "with_tasks": with_tasks, "the_task": task}
    for r in (await session.execute(READ_PIPELINE, params)).mappings():
        steps.setdefault(r["step"], {k: r[k] for k in _STEP_READ})
        if r["task_task"] is not None:
            tasks[r["task_task"]] = {k: r[f"task_{k}"] for k in ("task", *_TASK_WRITTEN)}
    return steps, tasks


async def _insert_step(session: AsyncSession, ev: VmStepChanged) -> dict[str, Any]:
    """A step the pipeline did not foresee, Pending, where it runs; its row."""
    name = ev.step.value
    step = {"step": name, "position": POSITION.get(name, len(POSITION))}
    step |= {"state": "Pending", "attempt": 1, "progress_completed": 0}
    step |= {"progress_total": 0, "started_at": None, "completed_at": None}
    step |= {"error": None, "detail": {}}
    await session.execute(
        insert(db.steps).values(
            migration_id=ev.migration_id,
            vm_id=ev.vm_id,
            step=name,
            position=step["position"],
            state="Pending",
        )
    )
    return step


async def _insert_task(session: AsyncSession, ev: VmStepChanged) -> dict[str, Any]:
    """A task the pipeline did not foresee (named by the event's ``detail.name``), Pending;
    its row."""
    assert ev.task is not None
    name = str(ev.detail.get("name") or ev.task)
    await session.execute(
        insert(db.tasks).values(
            migration_id=ev.migration_id,
            vm_id=ev.vm_id,
            step=ev.step.value,
            task=ev.task,
            name=name[:253],
            state="Pending",
        )
    )
    task: dict[str, Any] = {k: None for k in ("task", *_TASK_WRITTEN)}
    task |= {"task": ev.task, "state": "Pending", "attempt": 1}
    return task | {"progress_completed": 0, "progress_total": 0}


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
    if all(vm[k] == val for k, val in values.items()):
        return None
    return {**vm, **values}


async def _update_vm(session: AsyncSession, vm: Mapping[str, Any], values: dict[str, Any]) -> None:
    """Write ``values`` over the VM row (the rest as read under its lock), with a new
    revision."""
    row = {**vm, **values}
    await session.execute(
        UPDATE_VM,
        {"k_mid": vm["migration_id"], "k_vid": vm["vm_id"]}
        | {f"p_{k}": row[k] for k in _VM_WRITTEN},
    )
