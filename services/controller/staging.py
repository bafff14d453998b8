"""A multi-stage (warm) CR's claim, one step further: one stage pod at a time, into one
prime claim that lives across the stages (``shared.populator.stages``).

The prime holds every stage copied so far: each later stage writes only what changed since
the one before, so the prime outlives each stage pod and is handed to the user claim only
after the final stage. Level-triggered like the rest of the reconciler: what to do is
read from the CR (``spec.checkpoints``, ``status.stages``), the pod (its
``STAGE_ANNOTATION``) and the prime, never from memory, so a restart anywhere resumes:

- no checkpoint yet and nothing copied: wait (``WaitingForCheckpoint``), no prime, no pod;
- a pending checkpoint: the prime, then a pod for that stage; a pod of any other stage
  (the orchestrator replaced a checkpoint nobody copied) is retired first;
- a pod Succeeded: its stage is recorded in ``status.stages`` (once: by its checkpoint);
  a stage short of the final one then pauses (``Paused``: the pod goes, the prime stays);
  the final one is handed over as a cold copy is;
- a pod Failed: the cold path (its log kept, another pod); past the recreation limit the
  CR does not fail but marks the stage failed (``StageFailed``, ``failedCheckpoint``) and
  waits: the orchestrator either appends a new checkpoint (the backup had failed) or fails
  the VM. The prime stays with the stages it holds.

The recreation limit counts per stage: recording a stage resets the claim's count, since
a warm migration may run stages for days and a transient failure in each is no reason to
give up on the last.

Next: services/controller/ending.py
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from services.controller import manifests, metrics, status
from services.controller.kubeevents import WARNING
from shared import populator as contract
from shared.kube import PVC, Obj
from shared.populator import SourceRef
from shared.populator.stages import BackupMode, Checkpoint, Stage, StageArgs, StageResult, Stages

if TYPE_CHECKING:
    from services.controller.reconciling import Reconciler

log = logging.getLogger("hoist.controller.staging")

WAITING_FOR_CHECKPOINT = "WaitingForCheckpoint"
"""Pending: a multi-stage CR with no checkpoint to copy yet, nothing copied."""
PAUSED = "Paused"
"""Running: some stages copied, the next checkpoint not there yet (CDI's word)."""
PRIME_LOST = "PrimeClaimLost"
"""Failed: the prime claim holding the copied stages is gone; later stages cannot be
applied to an empty volume."""
OUT_OF_ORDER = "CheckpointOutOfOrder"
"""Waiting: the pending checkpoint is incremental from one this volume does not hold (the
orchestrator broke the order ``shared.populator.stages`` promises)."""
RETRY_SECONDS = 2.0
NAMED_STAGES = 10
"""Of the stages copied, the latest this many are named in a Paused message."""


def describe(stages: Stages, checkpoint: Checkpoint) -> str:
    """``stage 3 (incremental from c2)``: what a pod copies, for messages and Events."""
    number = stages.index_of(checkpoint.current) + 1
    how = (
        f"incremental from {checkpoint.previous}"
        if checkpoint.mode == BackupMode.INCREMENTAL
        else "full"
    )
    last = stages.final and checkpoint == stages.checkpoints[-1]
    return f"stage {number} ({'final, ' if last else ''}{how})"


def record_of(checkpoint: Checkpoint, pod: Obj) -> Stage:
    """The record of a stage its pod copied, from the pod's terminated state and the
    ``StageResult`` it wrote to its termination log (0 bytes when it wrote none)."""
    ended = manifests.termination(pod)
    result = StageResult.parse(str(ended.get("message") or ""))
    return Stage(
        current=checkpoint.current,
        backup_id=checkpoint.backup_id,
        mode=str(checkpoint.mode),
        bytes=result.bytes if result is not None else 0,
        started_at=str(ended.get("startedAt") or ""),
        ended_at=str(ended.get("finishedAt") or ""),
        pod=str(pod["metadata"]["name"]),
    )


class Staging:
    """The stage steps; the steps a cold copy shares (prime, pod, hand-over) are the
    ``Reconciler``'s."""

    def __init__(self, reconciler: Reconciler) -> None:
        self.r = reconciler
        self.kube = reconciler.kube
        self.ending = reconciler.ending

    async def step(
        self,
        claim: Obj,
        source: SourceRef,
        populator: Obj,
        stages: Stages,
        prime: Obj | None,
        pod: Obj | None,
        node: str | None,
    ) -> float | None:
        uid = claim["metadata"]["uid"]
        pending = stages.pending()
        if prime is None:
            if pod is not None:
                return await self.ending.retire_pod(claim, source, pod, "the prime claim is gone")
            if stages.copied:
                return await self._prime_lost(claim, source, populator, stages)
            if stages.stuck():
                return None  # StageFailed stays said; a new checkpoint wakes us
            if pending is None:
                return await self._wait_for_checkpoint(claim, populator)
            prime = await self.r.create_prime(claim, node)
        if pod is not None:
            if pod["metadata"].get("deletionTimestamp"):
                return None  # its deletion wakes us
            return await self._with_pod(claim, source, populator, stages, prime, pod)
        if prime["metadata"].get("deletionTimestamp"):
            return None  # a prime retired with a replaced first stage: its deletion wakes us
        if pending is not None:
            if pending.mode == BackupMode.INCREMENTAL and not stages.is_copied(pending.previous):
                return await self._out_of_order(claim, populator, stages, pending)
            index = stages.index_of(pending.current)
            return await self.r.create_pod(
                claim,
                source,
                populator,
                node,
                StageArgs.for_checkpoint(pending, index),
                describe(stages, pending),
            )
        if stages.complete():
            # The final stage is recorded and its pod gone: hand over without it.
            if await self.r.handed_over(prime, uid):
                return self.r.poll  # the binder binds the user claim next
            last = stages.copied[-1].pod if stages.copied else ""
            return await self.r.hand_over(claim, source, populator, prime, last)
        if stages.stuck():
            return None  # StageFailed stays said; a new checkpoint wakes us
        if not stages.copied:
            return await self._wait_for_checkpoint(claim, populator)
        return await self._paused(claim, populator, stages)

    async def _with_pod(
        self,
        claim: Obj,
        source: SourceRef,
        populator: Obj,
        stages: Stages,
        prime: Obj,
        pod: Obj,
    ) -> float | None:
        pending = stages.pending()
        copies = manifests.stage_of(pod)
        wanted = pending.current if pending is not None else ""
        phase = (pod.get("status") or {}).get("phase") or "Pending"
        if phase == "Succeeded" and copies and (copies == wanted or stages.is_copied(copies)):
            return await self._stage_copied(claim, source, populator, stages, prime, pod)
        if copies != wanted or pending is None:
            return await self._retire(claim, source, stages, prime, pod, copies, wanted)
        return await self.r.copying(claim, source, populator, pod, describe(stages, pending))

    async def _retire(
        self,
        claim: Obj,
        source: SourceRef,
        stages: Stages,
        prime: Obj,
        pod: Obj,
        copies: str,
        wanted: str,
    ) -> float | None:
        """A pod of a stage no longer asked for (its checkpoint replaced). With no stage
        copied yet its prime goes too: the next pod copies a first stage, which skips the
        ranges the source reads as zero (``--fresh-volume``), so its volume must not hold
        what the replaced stage wrote."""
        why = (
            f"it copies checkpoint {copies or '(none)'}, "
            f"the stage to copy now is {wanted or 'none (waiting for a checkpoint)'}"
        )
        if not await self.ending.remove_pod(claim, source, pod):
            return RETRY_SECONDS  # the pod stays until its end is announced
        if not stages.copied:
            meta = prime["metadata"]
            await self.kube.delete(PVC, meta["name"], meta["namespace"], uid=meta["uid"])
            why += "; its prime claim too, so the new first stage starts on an empty volume"
        name = pod["metadata"]["name"]
        await self.r.recorder.record(
            claim, WARNING, "PopulatorPodRetired", f"deleted populator pod {name}: {why}"
        )
        return None  # the deletions wake us

    async def _stage_copied(
        self,
        claim: Obj,
        source: SourceRef,
        populator: Obj,
        stages: Stages,
        prime: Obj,
        pod: Obj,
    ) -> float | None:
        """Record the stage, then hand over (the final stage) or pause (any other)."""
        uid = claim["metadata"]["uid"]
        copies = manifests.stage_of(pod)
        if not stages.is_copied(copies):
            checkpoint = stages.checkpoints[stages.index_of(copies)]
            record = record_of(checkpoint, pod)
            populator = await status.add_stage(self.kube, populator, uid, record)
            stages = Stages.of(populator) or stages
            if stages.is_copied(copies):
                await self.r.say(
                    claim,
                    "StageCopied",
                    f"populator pod {record.pod} copied {describe(stages, checkpoint)}, "
                    f"checkpoint {copies}: {record.bytes} bytes written",
                )
        if stages.complete():
            return await self.r.succeeded(claim, source, populator, prime, pod)
        if not stages.is_copied(copies):
            return RETRY_SECONDS  # the CR was gone: the next look waits for it
        await self._reset_recreations(claim)
        if not await self.ending.remove_pod(claim, source, pod):
            return RETRY_SECONDS  # the pod stays until its end is announced
        return None  # its deletion wakes us: then the next stage, or the pause

    async def _reset_recreations(self, claim: Obj) -> None:
        """A new stage starts with the full recreation allowance (the claim's count is
        what ``ending.pod_failed`` counts against the limit)."""
        if not self.ending.recreations(claim):
            return
        meta = claim["metadata"]
        await self.kube.patch(
            PVC,
            meta["name"],
            {
                "metadata": {
                    "annotations": {contract.RECREATIONS: "0"},
                    "resourceVersion": meta["resourceVersion"],
                }
            },
            meta["namespace"],
        )

    async def _paused(self, claim: Obj, populator: Obj, stages: Stages) -> float | None:
        """Stages copied, none pending, not the final one: wait for the next checkpoint
        (a CR change: its watch wakes the claim). The prime keeps the volume meanwhile."""
        names = [s.current for s in stages.copied]
        shown = ", ".join(names[-NAMED_STAGES:])
        if len(names) > NAMED_STAGES:
            shown = f"..., {shown}"
        count = f"{len(names)} stage{'s' if len(names) != 1 else ''}"
        message = f"{count} copied ({shown}); waiting for the next checkpoint"
        current = contract.Status.of(populator)
        if current.reason != PAUSED:
            await self.r.say(claim, PAUSED, message)
        await status.write(
            self.kube,
            populator,
            claim["metadata"]["uid"],
            phase=contract.Phase.RUNNING,
            reason=PAUSED,
            message=message,
        )
        return None

    async def _out_of_order(
        self, claim: Obj, populator: Obj, stages: Stages, pending: Checkpoint
    ) -> float | None:
        """An incremental stage whose base this volume does not hold: copied onto it, it
        would leave the volume neither the old disk nor the new. Not run; the
        orchestrator may still replace the checkpoint (a CR change wakes the claim)."""
        held = ", ".join(s.current for s in stages.copied[-NAMED_STAGES:]) or "none"
        message = (
            f"checkpoint {pending.current} is incremental from {pending.previous or '(none)'}, "
            f"which this volume does not hold (copied: {held}): not copied"
        )
        await self.r.recorder.record(claim, WARNING, OUT_OF_ORDER, message)
        await status.write(
            self.kube,
            populator,
            claim["metadata"]["uid"],
            phase=contract.Phase.RUNNING if stages.copied else contract.Phase.PENDING,
            reason=OUT_OF_ORDER,
            message=message,
        )
        return None

    async def _wait_for_checkpoint(self, claim: Obj, populator: Obj) -> float | None:
        await self.r.wait(
            claim,
            populator,
            WAITING_FOR_CHECKPOINT,
            "multi-stage copy: waiting for the first checkpoint in spec.checkpoints",
        )
        return None  # the checkpoint is a CR change, which wakes the claim

    async def _prime_lost(
        self, claim: Obj, source: SourceRef, populator: Obj, stages: Stages
    ) -> float | None:
        message = (
            f"the prime claim {contract.prime_claim(claim['metadata']['uid'])} holding the "
            f"{len(stages.copied)} stage(s) copied so far is gone: the next stages hold only "
            "what changed since, so the copy must start over"
        )
        await status.write(
            self.kube,
            populator,
            claim["metadata"]["uid"],
            phase=contract.Phase.FAILED,
            reason=PRIME_LOST,
            message=message,
        )
        await self.r.recorder.record(claim, WARNING, PRIME_LOST, message)
        metrics.POPULATIONS.labels("failed").inc()
        return await self.ending.clean_up_failed(claim, source)
