"""Writing what a step did: the VM row, its step and task rows, and the events, in one commit.

Every change of a step or task is published as ``migration.vm.step`` (and the end of a VM as
``migration.vm.finished``) through the outbox, in the same transaction as the rows: the
planner's status can never disagree with what this service recorded. Event ids are derived
from the VM's ``revision``, which the same transaction bumps: a transaction retried after a
crash writes the same ids, and JetStream drops the repeat.

Only real changes are published: a poll that learns nothing new (same state, same progress,
same note) writes the VM's ``next_run_at`` and nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.db import StepRow, VmRow, steps, vms
from shared import catalog
from shared.db.messaging import Outbox
from shared.payloads import (
    ErrorInfo,
    Outcome,
    ResourceRef,
    Step,
    StepProgress,
    StepState,
    VmFinished,
    VmStepChanged,
)
from shared.pipeline import VmPhase


@dataclass
class StepChange:
    step: Step
    state: StepState
    task: str = ""
    progress: StepProgress | None = None
    error: ErrorInfo | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class VmChange:
    """What becomes of the VM row; ``None`` fields stay as they are."""

    phase: VmPhase | None = None
    step: Step | None = None
    memory: dict[str, Any] | None = None
    holding: int | None = None
    holds_vm: bool | None = None
    error: ErrorInfo | None = None
    delay: float = 0.0
    started: bool = False
    finished: Outcome | None = None
    target_vm: ResourceRef | None = None
    changes: list[StepChange] = field(default_factory=list)

    def frees_slots(self, row: VmRow) -> bool:
        """Whether this change gives back slots ``row`` held (others may then start)."""
        return bool(
            (self.holding == 0 and row.holding) or (self.holds_vm is False and row.holds_vm)
        )


Snapshot = dict[tuple[str, str], tuple[str, int | None, int | None, str, str]]


async def snapshot(session: AsyncSession, migration_id: str, vm_id: str) -> Snapshot:
    """The VM's step and task rows as last recorded: what counts as a change."""
    rows = await session.execute(
        select(steps).where(and_(steps.c.migration_id == migration_id, steps.c.vm_id == vm_id))
    )
    return {(r.step, r.task): _key_of_row(StepRow.of(r)) for r in rows}


def _key_of_row(r: StepRow) -> tuple[str, int | None, int | None, str, str]:
    error = (r.error or {}).get("reason", "") if r.error else ""
    return (
        r.state,
        r.progress_completed,
        r.progress_total,
        error,
        str((r.detail or {}).get("note", "")),
    )


def _key_of(c: StepChange) -> tuple[str, int | None, int | None, str, str]:
    return (
        c.state.value,
        c.progress.completed if c.progress else None,
        c.progress.total if c.progress else None,
        c.error.reason if c.error else "",
        str(c.detail.get("note", "")),
    )


async def commit(
    session: AsyncSession,
    outbox: Outbox,
    row: VmRow,
    change: VmChange,
    before: Snapshot,
    *,
    owner: str,
    began: datetime | None = None,
) -> bool:
    """Apply ``change`` to the VM ``row`` if this replica still holds it; False if not (its
    lease ran out and another replica took the VM: this result is dropped).

    ``began``: when the step call that made ``change`` started. A step that starts and ends
    in one call (Initialize, usually) is recorded as started then, not left without a start;
    a step that was Running already keeps its earlier start (here and in the planner, which
    keeps the earliest)."""
    now = datetime.now(UTC)
    began = began or now
    values: dict[str, Any] = {
        "revision": vms.c.revision + 1,
        "updated_at": now,
        "next_run_at": now + timedelta(seconds=change.delay),
        "lease_owner": None,
        "lease_until": None,
    }
    if change.phase is not None:
        values["phase"] = change.phase.value
    for name in ("memory", "holding", "holds_vm"):
        value = getattr(change, name)
        if value is not None:
            values[name] = value
    if change.holds_vm is False and row.holds_vm:
        values["released_at"] = now
    if change.step is not None:
        values["step"] = change.step.value
    if change.error is not None:
        values["error"] = change.error.model_dump(mode="json")
    if change.started:
        values["started_at"] = now
    if change.finished is not None:
        values["finished_at"] = now
    result = await session.execute(
        update(vms)
        .where(
            and_(
                vms.c.migration_id == row.migration_id,
                vms.c.vm_id == row.vm_id,
                vms.c.lease_owner == owner,
            )
        )
        .values(**values)
        .returning(vms.c.revision)
    )
    revision = result.scalar_one_or_none()
    if revision is None:
        return False
    changed = [
        (index, c)
        for index, c in enumerate(change.changes)
        if before.get((c.step.value, c.task)) != _key_of(c)
    ]
    if changed:  # one statement for every row: a DiskTransfer poll changes one per disk
        await session.execute(_UPSERT_STEP, [_step_params(row, c, now, began) for _, c in changed])
    for index, c in changed:
        await outbox.add(
            session,
            catalog.VM_STEP_CHANGED,
            VmStepChanged(
                plan_id=row.plan_id,
                migration_id=row.migration_id,
                vm_id=row.vm_id,
                step=c.step,
                state=c.state,
                task=c.task or None,
                attempt=row.attempt,
                started_at=began if c.state is not StepState.PENDING else None,
                completed_at=now if c.state not in (StepState.PENDING, StepState.RUNNING) else None,
                progress=c.progress,
                error=c.error,
                detail=c.detail,
            ),
            event_id=f"vm-step-{row.migration_id}-{row.vm_id}-{revision}-{index}",
        )
    if change.finished is not None:
        await outbox.add(
            session,
            catalog.VM_FINISHED,
            VmFinished(
                plan_id=row.plan_id,
                migration_id=row.migration_id,
                vm_id=row.vm_id,
                outcome=change.finished,
                target_vm=change.target_vm,
                error=change.error if change.finished is not Outcome.SUCCEEDED else None,
            ),
            event_id=f"vm-finished-{row.migration_id}-{row.vm_id}",
        )
    return True


# Built once (the upsert's SQLAlchemy construct cost more CPU per commit than its round
# trip); executed with one parameter set per changed step or task.
_UPSERT_STEP = text(
    """
    INSERT INTO orchestrator.steps AS s (migration_id, vm_id, step, task, state, attempt,
        started_at, completed_at, progress_completed, progress_total, error, detail)
    VALUES (:migration_id, :vm_id, :step, :task, :state, :attempt, :started_at, :completed_at,
        :progress_completed, :progress_total, CAST(:error AS JSONB), CAST(:detail AS JSONB))
    ON CONFLICT (migration_id, vm_id, step, task) DO UPDATE SET
        state = excluded.state,
        started_at = COALESCE(s.started_at, excluded.started_at),
        completed_at = excluded.completed_at,
        progress_completed = COALESCE(excluded.progress_completed, s.progress_completed),
        progress_total = COALESCE(excluded.progress_total, s.progress_total),
        error = excluded.error,
        detail = s.detail || excluded.detail
    """
)


def _step_params(row: VmRow, c: StepChange, now: datetime, began: datetime) -> dict[str, Any]:
    final = c.state not in (StepState.PENDING, StepState.RUNNING)
    return {
        "migration_id": row.migration_id,
        "vm_id": row.vm_id,
        "step": c.step.value,
        "task": c.task,
        "state": c.state.value,
        "attempt": row.attempt,
        "started_at": began if c.state is not StepState.PENDING else None,
        "completed_at": now if final else None,
        "progress_completed": c.progress.completed if c.progress else None,
        "progress_total": c.progress.total if c.progress else None,
        "error": json.dumps(c.error.model_dump(mode="json")) if c.error else None,
        "detail": json.dumps(c.detail),
    }
