"""The runner's sorting of what a step raises, and the typed rows it reads.

The sorting is the one place every step's trouble ends up (``shared.errors``' vocabulary):
these tests pin what each kind of trouble becomes, so re-basing an exception cannot
silently move it to another branch. The rows are checked against the tables they read.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator import intake, runner
from services.orchestrator.answers import Answer, Done, Fail, Wait, error
from services.orchestrator.context import StepContext
from services.orchestrator.db import StepRow, VmRow, steps, vms
from services.orchestrator.objects import PVC, Conflict, Invalid
from services.orchestrator.sources.contract import SourceError
from shared import catalog
from shared import envelope as env
from shared.errors import PermanentError, RetryLater
from shared.payloads import Step
from shared.pipeline import VmPhase
from tests.orchestrator.plans import disk, started, vm

# --- sorting -----------------------------------------------------------------------------------


class Sources:
    """Stands in for the SourcePool: the runner drops a provider after a temporary error."""

    def __init__(self) -> None:
        self.dropped: list[str] = []

    async def drop(self, provider_id: str) -> None:
        self.dropped.append(provider_id)


def _context() -> StepContext:
    plan = started([vm(str(uuid.uuid4()), [disk(str(uuid.uuid4()))])])
    return StepContext(
        migration_id=plan.migration_id,
        plan_id=plan.plan_id,
        header=plan,
        vm=plan.vms[0],
        memory={},
        settings=None,  # type: ignore[arg-type]  # not read by the sorting
        clusters=None,  # type: ignore[arg-type]
        sources=Sources(),  # type: ignore[arg-type]
    )


def _runner() -> runner.Runner:
    bare: runner.Runner = runner.Runner.__new__(runner.Runner)
    bare.sources = Sources()  # type: ignore[assignment]
    return bare


async def _answer(
    monkeypatch: pytest.MonkeyPatch, raised: BaseException, ctx: StepContext | None = None
) -> tuple[Answer, StepContext, runner.Runner]:
    async def handler(_ctx: StepContext) -> Answer:
        raise raised

    monkeypatch.setitem(runner.HANDLERS, Step.INITIALIZE, handler)
    ctx = ctx or _context()
    run = _runner()
    return await run._call(Step.INITIALIZE, ctx), ctx, run


def _refused(status: int) -> ApiException:
    exc = ApiException(status=status, reason="Unprocessable Entity")
    exc.body = '{"message": "spec.resources: Required value"}'
    return exc


async def test_retry_later_waits_its_delay_with_its_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer, ctx, _ = await _answer(monkeypatch, RetryLater("the claim is being deleted", 2))
    assert answer == Wait(2, note="the claim is being deleted")
    assert ctx.memory == {}


async def test_a_conflict_fails_the_vm_as_target_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    conflict = Conflict(PVC, "ns", "disk-1", "was not made by Hoist")
    answer, _, _ = await _answer(monkeypatch, conflict)
    assert answer == Fail(
        error(
            "TargetConflict",
            "PersistentVolumeClaim ns/disk-1 already exists and was not made by Hoist; rename "
            "the target in the plan or remove that object, then run the plan again",
        )
    )
    assert str(conflict) == conflict.message
    assert isinstance(conflict, PermanentError)


async def test_an_object_refused_fails_the_vm_as_object_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    invalid = Invalid(PVC, "ns", "disk-1", _refused(422))
    answer, _, _ = await _answer(monkeypatch, invalid)
    assert answer == Fail(
        error(
            "ObjectRefused",
            "the cluster refused PersistentVolumeClaim ns/disk-1: spec.resources: Required value",
        )
    )
    assert invalid.status == 422


async def test_a_permanent_source_error_fails_the_vm(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = SourceError("VmNotFound", "VM 1 is not in the engine any more", permanent=True)
    answer, _, run = await _answer(monkeypatch, gone)
    assert answer == Fail(error("VmNotFound", "VM 1 is not in the engine any more"))
    assert run.sources.dropped == []  # type: ignore[attr-defined]
    assert (gone.reason, gone.permanent, gone.retry_after) == ("VmNotFound", True, None)


async def test_temporary_source_errors_wait_then_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    busy = SourceError("SourceBusy", "the engine cannot stop the VM now")
    assert (busy.permanent, busy.retry_after) == (False, 10.0)
    ctx = _context()
    for count in range(1, runner.SOURCE_ERRORS):
        answer, _, run = await _answer(monkeypatch, busy, ctx)
        assert answer == Wait(
            10.0, note="SourceBusy: the engine cannot stop the VM now; retried in 10 s"
        )
        assert ctx.memory["source_errors"] == count
        assert run.sources.dropped == [ctx.header.source.id]  # type: ignore[attr-defined]
    answer, _, _ = await _answer(monkeypatch, busy, ctx)
    assert answer == Fail(error("SourceBusy", busy.message, permanent=False))


async def test_time_and_the_unexpected(monkeypatch: pytest.MonkeyPatch) -> None:
    answer, _, _ = await _answer(monkeypatch, TimeoutError())
    assert answer == Wait(5.0, note="the step took too long; trying again")
    ctx = _context()
    for _ in range(1, runner.INTERNAL_ERRORS):
        answer, _, _ = await _answer(monkeypatch, KeyError("x"), ctx)
        assert answer == Wait(15.0, note="unexpected error; retried in 15 s")
    answer, _, _ = await _answer(monkeypatch, KeyError("x"), ctx)
    assert isinstance(answer, Fail)
    assert (answer.error.reason, answer.error.permanent) == ("InternalError", False)


async def test_an_answer_clears_the_error_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    async def handler(_ctx: StepContext) -> Answer:
        return Done()

    monkeypatch.setitem(runner.HANDLERS, Step.INITIALIZE, handler)
    ctx = _context()
    ctx.memory.update(source_errors=3, internal_errors=2, kept=1)
    assert await _runner()._call(Step.INITIALIZE, ctx) == Done()
    assert ctx.memory == {"kept": 1}


# --- typed rows ----------------------------------------------------------------------------------


def test_rows_have_every_column() -> None:
    assert [f.name for f in dataclasses.fields(VmRow)] == [*vms.c.keys(), "cutover"]
    assert [f.name for f in dataclasses.fields(StepRow)] == list(steps.c.keys())


async def test_a_claimed_row_reads_as_a_vm_row(db_session: AsyncSession) -> None:
    plan = started([vm(str(uuid.uuid4()), [disk(str(uuid.uuid4()))])])
    await intake.accept_part(env.build(catalog.PLAN_STARTED, plan, source="/test"), db_session)
    claimed = (
        await db_session.execute(
            text(
                "SELECT v.*, m.cutover FROM orchestrator.vms v JOIN orchestrator.migrations m"
                " ON m.id = v.migration_id WHERE v.migration_id = :id"
            ),
            {"id": plan.migration_id},
        )
    ).one()
    row = VmRow.of(claimed)
    assert row.phase is VmPhase.QUEUED  # the enums, not their strings
    assert row.step is Step.INITIALIZE
    assert (row.vm_id, row.plan_id, row.cutover) == (plan.vms[0].vm_id, plan.plan_id, None)
    selected = (await db_session.execute(select(vms).where(vms.c.vm_id == row.vm_id))).one()
    assert VmRow.of(selected) == row  # without the join, cutover is None too


def test_an_unknown_phase_is_refused() -> None:
    class Fake:
        _mapping: dict[str, Any] = {
            **dict.fromkeys(vms.c.keys()),
            "phase": "Paused",
            "step": "Initialize",
        }

    with pytest.raises(ValueError, match="Paused"):
        VmRow.of(Fake())  # type: ignore[arg-type]
