"""WarmPrecopy and FinalCopy: a warm VM's disks copied while it runs, then only what changed.

What the user counts on: a warm VM is down only from its power-off to its target VM's
creation, and in that window Hoist copies only what the guest wrote since the last precopy.
Each precopy is one oVirt backup of all the VM's disks: the first a full one, each later one
incremental from the checkpoint the one before made. The backup goes to the disks'
populator CRs as one more stage (``shared.populator.stages``): the controller runs one
populator pod per stage into the same prime claim and records the stage when its pod is
done, and the volume reaches the user claim only after the final stage.

One cycle, a state machine kept in ``memory["warm"]`` (so a crash anywhere resumes it):

1. ``idle``: time for a precopy (at once for the first, then ``precopy_interval_minutes``
   after the previous one ended): start a backup with an id derived from migration, VM,
   precopy and attempt, so a repeated call finds the backup it made;
2. ``starting``: wait for ``ready``, then append the checkpoint to every disk's CR;
3. ``copying``: wait until every disk's CR lists the checkpoint among its copied stages;
4. ``finalizing``: finalize the backup (always, even when it failed: the engine keeps the
   disks locked otherwise), remove the checkpoints no longer needed (all but the last).

A backup that fails (or that the engine forgot, after a restart) is given up and a new one
started at once (``attempt`` + 1); its checkpoint stays uncopied in the CRs and the new one
is appended after it (never replaced), so only the very first stage of a CR ever starts on
an empty volume. A checkpoint the engine cannot start from (invalid, gone) makes the next
backup a full one. After ``BACKUP_FAILURES`` failures in a row the VM fails.

WarmPrecopy repeats cycles until the plan's cutover has come (unset: at once, as for a cold
plan, so a warm plan without one precopies once and cuts over), and always makes at least
one precopy (the copy of everything, which a first precopy makes while the VM runs). A
cutover that comes while a precopy runs waits for it to end, its source still running: the
backup's disks stay locked while its stage pods read them, so a final backup could not start
before, and the final copy is smaller for it (as Forklift defers a cutover requested during
a precopy, MTV-686). FinalCopy runs one
last cycle with the source off, waits for the hand-over (DiskTransfer's wait), and removes
the VM's last checkpoint.

Next: services/orchestrator/finishing.py
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.orchestrator import disks
from services.orchestrator.answers import Answer, Done, Fail, Task, Wait, error
from services.orchestrator.context import StepContext
from services.orchestrator.objects import POPULATORS
from services.orchestrator.sources.backups import (
    BACKUP_REFUSED,
    CHECKPOINT_UNUSABLE,
    Backup,
    BackupPhase,
    BackupSource,
)
from services.orchestrator.sources.contract import SourceError
from services.orchestrator.sources.errors import SOURCE_UNSUPPORTED
from shared import populator as contract
from shared.payloads import ProviderType, StepProgress, StepState
from shared.populator.stages import BackupMode, Checkpoint, Stages, spec_with_stages

log = logging.getLogger("hoist.orchestrator.precopy")

BACKUP_FAILURES = 5
"""Backups in a row that fail (or are refused) before the VM fails."""
FINAL_POLL = 0.25
"""How soon FinalCopy looks again (at most): the source is down, each second is downtime."""
HISTORY = 20
"""Precopies remembered in the step's detail."""
_IDS = uuid.UUID("6f1c2b9e-5d1a-4c1e-9a55-7b0d8f3c2a10")


@dataclass
class WarmState:
    """``memory["warm"]``: where the VM's precopies stand."""

    number: int = 0
    """Precopies completed."""
    attempt: int = 0
    phase: str = "idle"  # idle | starting | copying | finalizing
    backup: str = ""
    previous: str = ""
    """The checkpoint the backup in flight starts from ("" for a full one)."""
    current: str = ""
    """The checkpoint the backup in flight makes."""
    checkpoint: str = ""
    """The last checkpoint every disk copied: where the next backup starts."""
    full_next: bool = False
    failures: int = 0
    next_at: float = 0.0
    started_at: float = 0.0
    bytes: int = 0
    """Bytes the last completed precopy wrote."""
    final_copied: bool = False
    made: list[str] = field(default_factory=list)
    """Checkpoints Hoist made and has not removed yet, oldest first."""
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, memory: dict[str, Any]) -> WarmState:
        raw = memory.get("warm") or {}
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def save(self, memory: dict[str, Any]) -> None:
        memory["warm"] = asdict(self)


def backup_id(migration_id: str, vm_id: str, number: int | str, attempt: int) -> str:
    """The id Hoist gives a precopy's backup: the same on every call of one attempt."""
    return str(uuid.uuid5(_IDS, f"{migration_id}/{vm_id}/{number}/{attempt}"))


def _cutover_come(ctx: StepContext) -> bool:
    """Unset means at once, as for a cold plan: one precopy, then the cutover."""
    return ctx.cutover is None or ctx.cutover <= datetime.now(UTC)


def _iso(epoch: float) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if epoch else None


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _detail(state: WarmState, *, final: bool = False) -> dict[str, Any]:
    running = state.phase != "idle"
    return {
        "precopy": {
            "number": state.number + (1 if running and not final else 0),
            "final": final,
            "running": running,
            "bytes": state.bytes,
            "nextAt": None if final or running else _iso(state.next_at),
            "checkpoint": state.checkpoint or None,
            "attempt": state.attempt,
        },
        "precopies": state.history[-HISTORY:],
    }


async def _source(ctx: StepContext) -> BackupSource:
    source = await ctx.source()
    if not isinstance(source, BackupSource):
        raise SourceError(
            SOURCE_UNSUPPORTED,
            f"{ProviderType(ctx.source_type).phrase('source')} has no changed-block backups: "
            "it cannot go warm",
            permanent=True,
        )
    return source


# --- the steps ------------------------------------------------------------------------------


async def warm_precopy(ctx: StepContext) -> Answer:
    if not ctx.memory.get("allocated"):
        made = await disks.allocate(ctx)  # claims and CRs (``checkpoints: []``: multi-stage)
        if isinstance(made, Fail):
            return made
        ctx.memory["allocated"] = True
    state = WarmState.of(ctx.memory)
    source = await _source(ctx)
    try:
        if state.number >= 1 and state.phase == "idle" and _cutover_come(ctx):
            return Done(detail={**_detail(state), "note": "the cutover came"})
        now = time.time()
        if state.phase == "idle" and now < state.next_at:
            wait = min(state.next_at - now, ctx.settings.poll_seconds * 15)
            if ctx.cutover is not None:
                wait = min(wait, max(0.5, (ctx.cutover - datetime.now(UTC)).total_seconds()))
            at = datetime.fromtimestamp(state.next_at, UTC)
            note = f"precopy {state.number} done: {_mib(state.bytes)}; next at {at:%H:%M:%S} UTC"
            return Wait(max(0.5, wait), note=note, detail=_detail(state))
        answer = await _cycle(ctx, source, state, final=False)
        if isinstance(answer, Done):
            at = datetime.fromtimestamp(state.next_at, UTC)
            note = f"precopy {state.number} done: {_mib(state.bytes)}; next at {at:%H:%M:%S} UTC"
            return Wait(0.0, note=note, detail=_detail(state))
        return answer
    finally:
        state.save(ctx.memory)


async def final_copy(ctx: StepContext) -> Answer:
    state = WarmState.of(ctx.memory)
    source = await _source(ctx)
    try:
        if not state.final_copied:
            answer = await _cycle(ctx, source, state, final=True)
            if not isinstance(answer, Done):
                return answer
            state.final_copied = True
        handed = await disks.transfer(ctx)  # the hand-over: CRs Succeeded, claims Bound
        if isinstance(handed, Wait):
            handed.note = f"final copy done ({_mib(state.bytes)}): handing the volumes over"
            handed.detail = {**handed.detail, **_detail(state, final=True)}
            handed.seconds = min(handed.seconds, FINAL_POLL)
        elif isinstance(handed, Done):
            # The final backup ends and the checkpoints go in Cleanup: the VM is up by then.
            handed.detail = {**handed.detail, **_detail(state, final=True)}
        return handed
    finally:
        state.save(ctx.memory)


async def ending(ctx: StepContext) -> bool:
    """Whether the VM's last backup is still ending (asked to end once more): Cleanup waits
    for it, as the engine keeps checkpoints while a backup runs."""
    if "warm" not in ctx.memory:
        return False
    state = WarmState.of(ctx.memory)
    if not state.backup:
        return False
    source = await _source(ctx)
    backup = await source.backup(ctx.vm.vm_id, state.backup)
    if backup is None or backup.over:
        return False
    await source.finalize_backup(ctx.vm.vm_id, state.backup)
    return True


async def release(ctx: StepContext) -> list[str]:
    """A failed or canceled warm VM: end its backup in flight and remove the checkpoints
    Hoist made (what is left is named); called by the teardown."""
    if "warm" not in ctx.memory:
        return []
    state = WarmState.of(ctx.memory)
    problems: list[str] = []
    try:
        source = await _source(ctx)
        if state.phase != "idle" and state.backup:
            await source.finalize_backup(ctx.vm.vm_id, state.backup)
            state.phase = "idle"
        if state.current and state.current not in state.made:
            state.made.append(state.current)
        await _remove_checkpoints(ctx, source, state, keep_last=False)
        if state.made:
            problems.append(f"checkpoint(s) {', '.join(state.made)} of the source VM")
    except SourceError as exc:
        problems.append(f"source backups: {exc.message}")
    state.save(ctx.memory)
    return problems


# --- one cycle ------------------------------------------------------------------------------


async def _cycle(
    ctx: StepContext, source: BackupSource, state: WarmState, *, final: bool
) -> Answer:
    """One call's worth of the precopy state machine; ``Done`` once the stage is copied and
    its backup finalized."""
    vm_id = ctx.vm.vm_id
    poll = ctx.settings.poll_seconds
    if state.phase == "idle":
        return await _start(ctx, source, state, final=final)
    if state.phase in ("starting", "copying"):
        backup = await source.backup(vm_id, state.backup)
        if backup is None or backup.phase is BackupPhase.FAILED:
            return await _failed(ctx, source, state, backup)
        if state.phase == "starting":
            if backup.phase is not BackupPhase.READY:
                soon = FINAL_POLL if final else 1.0
                return Wait(min(soon, poll), note=f"backup {backup.id} is {backup.phase}")
            state.current = backup.to_checkpoint or backup.id
            if not backup.to_checkpoint:
                state.full_next = True  # nothing to start an incremental one from
            await _add_checkpoint(ctx, backup, state.current, final=final)
            state.phase = "copying"
        answer = await _copying(ctx, state, final=final)
        if answer is not None:
            return answer
        state.phase = "finalizing"
    await source.finalize_backup(vm_id, state.backup)
    if not final:
        backup = await source.backup(vm_id, state.backup)
        if backup is not None and not backup.over:
            return Wait(min(1.0, poll), note=f"finalizing backup {state.backup}")
    # The final backup ends while the volumes are handed over (``final_copy`` waits for
    # both): the source is down, and every second here is downtime.
    ended = time.time()
    state.history.append(
        {
            "number": "final" if final else state.number + 1,
            "checkpoint": state.current,
            "bytes": state.bytes,
            "startedAt": _iso(state.started_at),
            "endedAt": _iso(ended),
        }
    )
    del state.history[:-HISTORY]
    state.checkpoint = state.current
    state.made.append(state.current)
    state.full_next = False
    state.failures = 0
    state.phase = "idle"
    if not final:
        state.number += 1
        interval = ctx.settings.precopy_interval_seconds
        state.next_at = ended + (interval or ctx.header.precopy_interval_minutes * 60)
        await _remove_checkpoints(ctx, source, state, keep_last=True)
    return Done(detail=_detail(state, final=final))


async def _start(
    ctx: StepContext, source: BackupSource, state: WarmState, *, final: bool
) -> Answer:
    previous = "" if state.full_next or not state.checkpoint else state.checkpoint
    number: int | str = "final" if final else state.number + 1
    state.backup = backup_id(ctx.migration_id, ctx.vm.vm_id, number, state.attempt)
    state.previous, state.current = previous, ""
    state.started_at = time.time()
    try:
        backup = await source.start_backup(
            ctx.vm.vm_id, state.backup, [d.disk_id for d in ctx.vm.disks], previous
        )
    except SourceError as exc:
        if exc.reason == CHECKPOINT_UNUSABLE:
            state.full_next = True
            state.attempt += 1
            return Wait(0.0, note=f"{exc.message}; the next backup is a full one")
        if exc.reason == BACKUP_REFUSED:
            return _again(ctx, state, exc.message)
        raise
    state.phase = "starting"
    kind = "full" if not previous else f"incremental from checkpoint {previous}"
    what = "final copy" if final else f"precopy {state.number + 1}"
    return Wait(
        min(FINAL_POLL if final else 1.0, ctx.settings.poll_seconds),
        note=f"{what}: backup {backup.id} ({kind}) is {backup.phase}",
        detail=_detail(state, final=final),
    )


def _again(ctx: StepContext, state: WarmState, why: str) -> Answer:
    state.failures += 1
    state.attempt += 1
    state.phase = "idle"
    state.next_at = 0.0
    if state.failures >= BACKUP_FAILURES:
        return Fail(
            error(
                "BackupFailed",
                f"{state.failures} backups of the source VM failed in a row; last: {why}",
                permanent=False,
            )
        )
    delay = min(60.0, ctx.settings.poll_seconds * 2**state.failures)
    return Wait(delay, note=f"{why}; a new backup in {delay:g} s")


async def _failed(
    ctx: StepContext, source: BackupSource, state: WarmState, backup: Backup | None
) -> Answer:
    """The backup in flight failed or is gone: end it and start another."""
    await source.finalize_backup(ctx.vm.vm_id, state.backup)
    if backup is None:
        why = f"the engine no longer knows backup {state.backup} (restarted?)"
    else:
        why = f"backup {backup.id} failed" + (f": {backup.why}" if backup.why else "")
        if state.previous and backup.needs_full:
            state.full_next = True
    log.info("VM %s: %s", ctx.vm.vm_id, why)
    return _again(ctx, state, why)


async def _add_checkpoint(ctx: StepContext, backup: Backup, current: str, *, final: bool) -> None:
    """Append the backup's stage to every disk's CR (once: a repeated call finds it)."""
    objects = await ctx.objects()
    kind = POPULATORS[contract.kind_for(ctx.source_type)]
    for disk in ctx.vm.disks:
        name = contract.populator_cr(disk.pvc_name)
        cr = await objects.get(kind, name)
        stages = Stages.of(cr or {})
        if cr is None or stages is None:
            raise SourceError(
                "DiskLost",
                f"the populator of disk {disk.disk_id} ({disk.pvc_name}) is gone or not "
                "multi-stage; run the plan again",
                permanent=True,
            )
        listed = list(stages.checkpoints)
        if not any(c.current == current for c in listed):
            mode = backup.modes.get(disk.disk_id, BackupMode.FULL.value)
            listed.append(
                Checkpoint(
                    current=current,
                    backup_id=backup.id,
                    previous=backup.from_checkpoint if mode == BackupMode.INCREMENTAL else "",
                    mode=BackupMode(mode),
                )
            )
        elif stages.final == final:
            continue
        spec = spec_with_stages(dict(cr.get("spec") or {}), listed, final)
        await objects.patch(kind, name, {"spec": spec})


async def _copying(ctx: StepContext, state: WarmState, *, final: bool) -> Answer | None:
    """None once every disk copied the stage (its bytes in ``state.bytes``); else what to
    answer meanwhile."""
    objects = await ctx.objects()
    kind = POPULATORS[contract.kind_for(ctx.source_type)]
    tasks: list[Task] = []
    written = copied = total = 0
    for disk in ctx.vm.disks:
        cr = await objects.get(kind, contract.populator_cr(disk.pvc_name))
        stages = Stages.of(cr or {})
        if cr is None or stages is None:
            return Fail(
                error(
                    "DiskLost",
                    f"the populator of disk {disk.disk_id} ({disk.pvc_name}) was deleted "
                    "while copying; run the plan again",
                )
            )
        status = contract.Status.of(cr)
        size = disk.size_bytes
        total += size
        if status.phase == contract.Phase.FAILED or stages.failed == state.current:
            # Its backup is fine (``_cycle`` looked first): the populator itself failed.
            reason = disks.disk_error(disk, status)
            return Fail(reason, tasks=[Task(disk.disk_id, StepState.FAILED, error=reason)])
        stage = next((s for s in stages.copied if s.current == state.current), None)
        if stage is not None:
            written += stage.bytes
            copied += size
            tasks.append(
                Task(
                    disk.disk_id,
                    StepState.RUNNING,
                    StepProgress(completed=size, total=size),
                    detail={"stage": state.current, "bytes": stage.bytes},
                )
            )
            continue
        part = size * status.percent() // 100
        copied += part
        tasks.append(
            Task(
                disk.disk_id,
                StepState.RUNNING,
                StepProgress(completed=part, total=size),
                detail={"stage": state.current, "note": status.message[:500]},
            )
        )
    if all("bytes" in t.detail for t in tasks):
        state.bytes = written
        return None
    what = "final copy" if final else f"precopy {state.number + 1}"
    return Wait(
        min(ctx.settings.poll_seconds, FINAL_POLL) if final else ctx.settings.poll_seconds,
        note=f"{what}: copying checkpoint {state.current}",
        progress=StepProgress(completed=copied, total=total),
        detail=_detail(state, final=final),
        tasks=tasks,
    )


async def _remove_checkpoints(
    ctx: StepContext, source: BackupSource, state: WarmState, *, keep_last: bool
) -> None:
    """Remove the checkpoints Hoist made that are no longer needed, root first (the engine
    removes only a chain's root). One it cannot remove now is tried again next time."""
    keep = state.made[-1:] if keep_last else []
    chain = await source.checkpoints(ctx.vm.vm_id)
    present = {c.id for c in chain}
    state.made = [c for c in state.made if c in present]
    for c in chain:
        if c.id not in state.made or c.id in keep:
            break  # not ours, or the one still needed: what follows it stays too
        try:
            await source.remove_checkpoint(ctx.vm.vm_id, c.id)
        except SourceError as exc:
            log.info("VM %s: checkpoint %s not removed now: %s", ctx.vm.vm_id, c.id, exc)
            break
        state.made.remove(c.id)
