"""The runner: takes due VMs from PostgreSQL, runs one step call each, records the answer.

Nothing about a VM lives only in memory. A replica *leases* a due VM (``FOR UPDATE SKIP
LOCKED``: replicas never take the same one), calls its current step once, and commits the
answer with the lease released and ``next_run_at`` set (now, to go on; later, to look
again). A replica killed mid-call leaves a lease that simply runs out
(``HOIST_ORCHESTRATOR_LEASE_SECONDS``); whoever takes the VM then calls the same step again,
which finds what the first call did (deterministic names, create-or-get) and goes on.

Before a VM's first step touches its source, admission (``admission.py``, called from here)
gives it its slots or keeps it Queued. The steps, in order, are ``shared.pipeline``'s; the
handlers live in ``preparing.py``, ``disks.py``, ``precopy.py``, ``conversion.py``,
``hooks.py`` and ``finishing.py``.

Errors are sorted here, once, for every step (``shared.errors``' vocabulary): ``RetryLater``
and a temporary ``SourceError`` wait and try again (the step shows why); a permanent
``SourceError`` or any ``PermanentError`` (a ``Conflict`` with an object Hoist did not make,
an object the API server refuses) fails the VM with its reason; an unexpected exception is
retried a few times and then fails the VM as ``InternalError`` (logged with its traceback,
never shown to users).

The claim binds the active phases (``VM_ACTIVE``) with ``values()``, rendered inline: the
statement PostgreSQL receives spells the very list of the ``vms_due`` partial index's
predicate, so its plan keeps the index however often the statement runs.

Next: services/orchestrator/preparing.py
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.orchestrator import (
    admission,
    conversion,
    disks,
    finishing,
    hooks,
    precopy,
    preparing,
    recording,
)
from services.orchestrator.answers import Answer, Done, Fail, Wait, error
from services.orchestrator.context import SourcePool, StepContext
from services.orchestrator.db import VmRow
from services.orchestrator.recording import StepChange, VmChange
from services.orchestrator.sources.contract import SourceError
from shared.clusters import Clusters
from shared.db.engine import values
from shared.db.messaging import Outbox
from shared.errors import PermanentError, RetryLater
from shared.payloads import (
    ErrorInfo,
    Outcome,
    PlannedVm,
    PlanStarted,
    ResourceRef,
    Step,
    StepState,
)
from shared.pipeline import COPIED_AFTER, DOWNTIME_STARTS, VM_ACTIVE, VmPhase, next_step
from shared.settings import OrchestratorSettings

log = logging.getLogger("hoist.orchestrator.runner")

Handler = Callable[[StepContext], Awaitable[Answer]]
HANDLERS: dict[Step, Handler] = {
    Step.INITIALIZE: preparing.initialize,
    Step.WARM_PRECOPY: precopy.warm_precopy,
    Step.PRE_HOOK: hooks.pre_hook,
    Step.POWER_OFF_SOURCE: preparing.power_off,
    Step.CONVERT_OPENSTACK_SNAPSHOT: preparing.convert,
    Step.DISK_ALLOCATION: disks.allocate,
    Step.DISK_TRANSFER: disks.transfer,
    Step.FINAL_COPY: precopy.final_copy,
    Step.CONVERT_GUEST: conversion.convert_guest,
    Step.VIRTUAL_MACHINE_CREATION: finishing.create_vm,
    Step.POST_HOOK: hooks.post_hook,
    Step.CLEANUP: finishing.cleanup,
}
INTERNAL_ERRORS = 5
SOURCE_ERRORS = 30

_CLAIM = text(
    """
    UPDATE orchestrator.vms v
    SET lease_owner = :owner, lease_until = now() + make_interval(secs => :lease)
    FROM (
        SELECT migration_id, vm_id FROM orchestrator.vms
        WHERE phase IN :active
          AND next_run_at <= now()
          AND (lease_until IS NULL OR lease_until < now())
        ORDER BY next_run_at, position
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ) due, orchestrator.migrations m
    WHERE v.migration_id = due.migration_id AND v.vm_id = due.vm_id
      AND m.id = v.migration_id
    RETURNING v.*, m.cutover
    """
).bindparams(values("active", VM_ACTIVE))
_RELEASE = text(
    "UPDATE orchestrator.vms SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = :owner"
)
_HEADER = text("SELECT header FROM orchestrator.migrations WHERE id = :id")
# A nudge (``population.ended``): a waiting VM looks again now instead of at its next poll.
# A VM held by a step call keeps its time (the commit sets it) and is nudged after that
# commit (``_commit``); ``held``: this replica holds it (another replica's poll covers it).
_NUDGE = text(
    """
    UPDATE orchestrator.vms
    SET next_run_at = CASE WHEN lease_owner IS NULL AND next_run_at > now() THEN now()
                           ELSE next_run_at END
    WHERE migration_id = :migration AND vm_id = :vm
    RETURNING lease_owner = :owner AS held
    """
)


class Runner:
    def __init__(
        self,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        clusters: Clusters,
        sources: SourcePool,
        settings: OrchestratorSettings,
    ) -> None:
        self.engine = engine
        self.sessionmaker = sessionmaker
        self.outbox = outbox
        self.clusters = clusters
        self.sources = sources
        self.settings = settings
        self.owner = f"{socket.gethostname()}-{os.getpid()}"[:64]
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._headers: dict[str, PlanStarted] = {}
        self._stopping = False
        #: VMs nudged while a step call held them: nudged again once it committed.
        self._nudged: set[tuple[str, str]] = set()

    def wake(self) -> None:
        self._wake.set()

    async def nudge(self, migration_id: str, vm_id: str) -> None:
        """Something the VM waits for happened (its disk's population ended): run its step
        now rather than at its next poll. Best effort: the poll remains the safety net."""
        async with self.sessionmaker() as session, session.begin():
            found = await session.execute(
                _NUDGE, {"migration": migration_id, "vm": vm_id, "owner": self.owner}
            )
            if found.scalar_one_or_none():
                self._nudged.add((migration_id, vm_id))
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            free = self.settings.workers - len(self._running)
            if free > 0:
                try:
                    rows = await self._claim(free)
                except Exception:  # the database may be restarting
                    log.warning("cannot take due VMs; trying again", exc_info=True)
                    rows = []
                for row in rows:
                    task = asyncio.create_task(self._one(row), name=f"vm-{row.vm_id}")
                    self._running.add(task)
                    task.add_done_callback(self._done)
                if len(rows) == free:
                    continue  # more may be due
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_seconds / 2)
            self._wake.clear()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()

    async def stop(self) -> None:
        """Let the step calls in progress finish (their answers are committed), up to the
        lease; those still running then are cancelled and their VMs are taken up again."""
        self._stopping = True
        self._wake.set()
        if self._running:
            await asyncio.wait(self._running, timeout=self.settings.lease_seconds / 2)
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.wait(self._running, timeout=2)
        # What was cut short is given back at once: a restarted or other replica need not
        # wait for the lease to run out (after a kill -9, it does).
        try:
            async with self.sessionmaker() as session, session.begin():
                await session.execute(_RELEASE, {"owner": self.owner})
        except Exception:  # the database may be gone too; the leases then simply run out
            log.warning("could not give back the VMs this replica held", exc_info=True)

    async def _claim(self, limit: int) -> list[VmRow]:
        """Lease up to ``limit`` due VMs. A row this code cannot read (a phase or step it does
        not know) is left to its lease, as a failed step call is: the others go on."""
        async with self.sessionmaker() as session, session.begin():
            result = await session.execute(
                _CLAIM,
                {"owner": self.owner, "lease": self.settings.lease_seconds, "limit": limit},
            )
            rows = list(result)
        claimed: list[VmRow] = []
        for row in rows:
            try:
                claimed.append(VmRow.of(row))
            except ValueError:
                log.exception("VM %s of migration %s: unreadable row", row.vm_id, row.migration_id)
        return claimed

    async def _header(self, migration_id: str) -> PlanStarted:
        cached = self._headers.get(migration_id)
        if cached is None:
            async with self.engine.connect() as conn:
                header = (await conn.execute(_HEADER, {"id": migration_id})).scalar_one()
            cached = PlanStarted.model_validate({**header, "vms": []})
            if len(self._headers) >= 1000:  # headers never change; a bounded cache is enough
                self._headers.clear()
            self._headers[migration_id] = cached
        return cached

    async def _one(self, row: VmRow) -> None:
        try:
            header = await self._header(row.migration_id)
            vm = PlannedVm.model_validate(row.spec)
            ctx = StepContext(
                migration_id=row.migration_id,
                plan_id=row.plan_id,
                header=header.model_copy(update={"vms": [vm]}),
                vm=vm,
                memory=dict(row.memory or {}),
                settings=self.settings,
                clusters=self.clusters,
                sources=self.sources,
                cutover=row.cutover,
            )
            began = datetime.now(UTC)
            async with asyncio.timeout(self.settings.lease_seconds * 0.8):
                change = await self._advance(row, ctx)
            await self._commit(row, change, began)
        except Exception:
            # The lease runs out and the VM is taken up again; nothing is lost.
            log.exception("VM %s of migration %s: step call failed", row.vm_id, row.migration_id)

    async def _commit(self, row: VmRow, change: VmChange, began: datetime) -> None:
        async with self.sessionmaker() as session, session.begin():
            before = await recording.snapshot(session, row.migration_id, row.vm_id)
            kept = await recording.commit(
                session, self.outbox, row, change, before, owner=self.owner, began=began
            )
            if kept and change.frees_slots(row):
                await admission.wake_heads(session, row.source_provider)
        if not kept:
            log.warning("VM %s: lease lost before its step ended; result dropped", row.vm_id)
        elif change.delay == 0:
            self._wake.set()
        key = (row.migration_id, row.vm_id)
        if key in self._nudged and change.delay > 0:
            # Nudged while this call ran: what it waits for may have come after it looked.
            await self.nudge(*key)
        self._nudged.discard(key)

    # --- one call -------------------------------------------------------------------------

    async def _advance(self, row: VmRow, ctx: StepContext) -> VmChange:
        step = row.step
        if row.phase in (VmPhase.FAILING, VmPhase.CANCELING):
            return await self._teardown(row, ctx, step)
        if row.cancel_requested and row.phase is VmPhase.QUEUED:
            # Nothing was done for it yet: nothing to undo.
            return VmChange(
                phase=VmPhase.CANCELED,
                holding=0,
                holds_vm=False,
                memory=ctx.memory,
                error=ErrorInfo(reason="Canceled", message="canceled by request", permanent=False),
                finished=Outcome.CANCELED,
                changes=[StepChange(step, StepState.CANCELED)],
            )
        if row.cancel_requested and step is not Step.CLEANUP:
            return VmChange(
                phase=VmPhase.CANCELING,
                holding=0,
                memory=ctx.memory,
                changes=[StepChange(step, StepState.CANCELED)],
            )
        starting = row.phase is VmPhase.QUEUED
        if row.admitted_at is None:
            # Before anything touches the source: a VM not admitted stays Queued, its
            # source untouched (a VM Running without admission is one from before it).
            decision = await self._admit(row, ctx)
            if not decision.admitted:
                state = StepState.PENDING if starting else StepState.RUNNING
                return VmChange(
                    delay=decision.retry_after,
                    changes=[StepChange(step, state, detail=decision.detail())],
                )
        if ctx.warm and step in DOWNTIME_STARTS and not row.holds_vm:
            # A warm VM precopied without a VM slot (its source ran); going down takes one,
            # before its pre hook: a hook that stops the application starts the downtime.
            decision = await self._admit(row, ctx, vm_slot=True)
            if not decision.admitted:
                return VmChange(
                    delay=decision.retry_after,
                    changes=[StepChange(step, StepState.RUNNING, detail=decision.detail())],
                )
        answer = await self._call(step, ctx)
        change = self._change(row, ctx, step, answer)
        if starting:
            change.phase = change.phase or VmPhase.RUNNING
            change.started = True
            for c in change.changes:
                if c.step is step and not c.task:
                    c.detail["waiting"] = None  # it waits no more
        return change

    async def _admit(
        self, row: VmRow, ctx: StepContext, *, vm_slot: bool = False
    ) -> admission.Decision:
        header = ctx.header
        request = admission.Request(
            migration_id=row.migration_id,
            vm_id=row.vm_id,
            source_provider=row.source_provider,
            position=row.position,
            disks=len(ctx.vm.disks),
            vm_limit=header.max_vms_in_flight,
            plan_limit=header.max_disks_in_flight,
            source_limit=header.max_disks_in_flight_per_source,
            cutover=row.cutover,
            warm=ctx.warm,
        )
        async with self.sessionmaker() as session, session.begin():
            if vm_slot:
                return await admission.take_vm_slot(
                    session, request, poll=self.settings.poll_seconds
                )
            return await admission.admit(session, request, poll=self.settings.poll_seconds)

    async def _call(self, step: Step, ctx: StepContext) -> Answer:
        memory = ctx.memory
        try:
            answer = await HANDLERS[step](ctx)
        except SourceError as exc:
            if exc.permanent:
                return Fail(error(exc.reason, exc.message, permanent=True))
            count = int(memory.get("source_errors", 0)) + 1
            memory["source_errors"] = count
            if count >= SOURCE_ERRORS:
                return Fail(error(exc.reason, exc.message, permanent=False))
            await self.sources.drop(ctx.header.source.id)
            return Wait(
                SourceError.RETRY_SECONDS,
                note=f"{exc.reason}: {exc.message}; retried in {SourceError.RETRY_SECONDS:g} s",
            )
        except PermanentError as exc:  # objects.Conflict (TargetConflict), Invalid (ObjectRefused)
            return Fail(error(exc.reason, exc.message))
        except RetryLater as exc:
            return Wait(exc.delay, note=exc.message)
        except TimeoutError:
            return Wait(5.0, note="the step took too long; trying again")
        except Exception:  # sorted below; the traceback goes to the log only
            count = int(memory.get("internal_errors", 0)) + 1
            memory["internal_errors"] = count
            log.exception("VM %s, step %s: unexpected error (%d)", ctx.vm.vm_id, step, count)
            if count >= INTERNAL_ERRORS:
                return Fail(
                    error(
                        "InternalError",
                        f"step {step.value} failed {count} times with an unexpected error; "
                        "see the orchestrator's log",
                        permanent=False,
                    )
                )
            return Wait(15.0, note="unexpected error; retried in 15 s")
        memory.pop("source_errors", None)
        memory.pop("internal_errors", None)
        return answer

    def _change(self, row: VmRow, ctx: StepContext, step: Step, answer: Answer) -> VmChange:
        tasks = [
            StepChange(step, t.state, t.task, t.progress, t.error, t.detail)
            for t in getattr(answer, "tasks", [])
        ]
        if isinstance(answer, Wait):
            detail = {**answer.detail, "note": answer.note}
            return VmChange(
                memory=ctx.memory,
                delay=answer.seconds,
                changes=[
                    StepChange(step, StepState.RUNNING, "", answer.progress, None, detail),
                    *tasks,
                ],
            )
        if isinstance(answer, Fail):
            return VmChange(
                phase=VmPhase.FAILING,
                holding=0,
                memory=ctx.memory,
                error=answer.error,
                changes=[
                    StepChange(step, StepState.FAILED, error=answer.error, detail=answer.detail),
                    *tasks,
                ],
            )
        assert isinstance(answer, Done)
        following = next_step(
            ctx.source_type, step, ctx.warm, ctx.vm.convert_guest, [h.step for h in ctx.vm.hooks]
        )
        done = StepChange(
            step, StepState.COMPLETED, "", answer.progress, None, {**answer.detail, "note": ""}
        )
        change = VmChange(memory=ctx.memory, step=following, changes=[*tasks, done])
        if step in COPIED_AFTER:
            change.holding = 0
        if step is Step.VIRTUAL_MACHINE_CREATION or following is Step.COMPLETED:
            change.holds_vm = False  # the target VM exists: the VM is no longer down
        if following is Step.COMPLETED:
            change.phase = VmPhase.SUCCEEDED
            change.finished = Outcome.SUCCEEDED
            target = ctx.memory.get("target_vm")
            change.target_vm = ResourceRef(**target) if target else None
        else:
            change.changes.append(StepChange(following, StepState.RUNNING))
        return change

    async def _teardown(self, row: VmRow, ctx: StepContext, step: Step) -> VmChange:
        keep = row.phase is VmPhase.FAILING and self.settings.keep_failed
        answer, problems = await finishing.teardown(ctx, keep=keep)
        if isinstance(answer, Wait):
            return VmChange(memory=ctx.memory, delay=answer.seconds)
        canceled = row.phase is VmPhase.CANCELING
        previous = ErrorInfo.model_validate(row.error) if row.error else None
        if canceled:
            message = "canceled by request"
            if problems:
                message += "; left behind: " + "; ".join(problems)
            final_error = ErrorInfo(reason="Canceled", message=message, permanent=False)
        else:
            final_error = previous or error("Failed", "the VM failed")
            if problems:
                final_error = final_error.model_copy(
                    update={"message": f"{final_error.message}; left behind: {'; '.join(problems)}"}
                )
        return VmChange(
            phase=VmPhase.CANCELED if canceled else VmPhase.FAILED,
            holding=0,
            holds_vm=False,  # the source is back as it was: its VM slot is free
            memory=ctx.memory,
            error=final_error,
            finished=Outcome.CANCELED if canceled else Outcome.FAILED,
        )
