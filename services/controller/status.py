"""Writing a populator CR's ``status`` (``shared.populator.Status``: what the pipeline reads
to learn how a disk is doing).

Only fields that changed are written (a merge patch of the status subresource), so a
reconcile that finds nothing new writes nothing, and the CR watch the write triggers ends
there. ``claimUID`` ties a status to the claim it is about: a CR that still carries the
status of an earlier claim (a re-run reusing the name) is reset rather than believed.
``status.stages`` (a multi-stage CR's copied stages) is a list only ever appended to, so
its writes are guarded by the CR's resourceVersion (``add_stage``).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from shared import populator as contract
from shared.kube import POPULATORS, Kube, Obj, not_found
from shared.populator import SourceRef
from shared.populator.stages import FAILED_CHECKPOINT, STAGES, Stage

log = logging.getLogger("hoist.controller.status")


async def read(kube: Kube, source: SourceRef) -> Obj | None:
    """The CR a claim names, with its ``kind`` (``write`` patches by it); None while it
    does not exist."""
    populator = await kube.get(POPULATORS[source.kind.name], source.name, source.namespace)
    if populator is not None:
        populator.setdefault("kind", source.kind.name)
    return populator


def wanted(populator: Obj, claim_uid: str, **fields: Any) -> Obj:
    """The status fields to hold (API spelling): ``fields``, named as ``Status``'s
    attributes (a name it lacks is a ``TypeError``), and ``claimUID``; a log is cut to
    what the status may hold. The fields not given are not part of it."""
    if "log" in fields:
        fields["log"] = contract.tail(str(fields["log"]))
    status = dataclasses.replace(contract.Status.of(populator), claim_uid=claim_uid, **fields)
    return {k: v for k, v in status.to_dict().items() if k in fields or k == contract.CLAIM_UID}


async def write(kube: Kube, populator: Obj, claim_uid: str, **fields: Any) -> Obj:
    """Set the given status fields and ``claimUID``; returns the CR as it now is. Compared
    with the status as written, not as read back into ``Status``, so a field someone wrote
    oddly is rewritten rather than assumed equal.

    A CR deleted meanwhile is not an error: the reconcile that follows waits for it."""
    current = populator.get("status") or {}
    target = wanted(populator, claim_uid, **fields)
    changes = {k: v for k, v in target.items() if current.get(k) != v}
    if not changes:
        return populator
    updated = await _patch(kube, populator, changes)
    if "phase" in changes:
        meta = populator["metadata"]
        log.info(
            "%s %s/%s: %s %s",
            populator["kind"],
            meta["namespace"],
            meta["name"],
            changes["phase"],
            target.get("reason", ""),
        )
    return updated


async def reset(kube: Kube, populator: Obj, claim_uid: str) -> Obj:
    """A stale status (about another claim) made this claim's and ``fresh``, its stages
    dropped too: the stages an earlier claim copied are not in this claim's volume."""
    populator = await write(kube, populator, claim_uid, **contract.fresh())
    held = populator.get("status") or {}
    if held.get(STAGES) or held.get(FAILED_CHECKPOINT):
        populator = await _patch(kube, populator, {STAGES: [], FAILED_CHECKPOINT: ""})
    return populator


async def fail_stage(kube: Kube, populator: Obj, checkpoint: str) -> Obj:
    """Mark ``checkpoint``'s stage failed for good (``FAILED_CHECKPOINT``)."""
    if (populator.get("status") or {}).get(FAILED_CHECKPOINT) == checkpoint:
        return populator
    return await _patch(kube, populator, {FAILED_CHECKPOINT: checkpoint})


async def add_stage(kube: Kube, populator: Obj, claim_uid: str, stage: Stage) -> Obj:
    """``stage`` appended to ``status.stages`` unless its checkpoint is there already (a
    stage is recorded once, however often its pod's success is seen).

    The list is written whole (a merge patch replaces lists), so the patch names the
    resourceVersion read: had anyone written the status since, the 409 makes the
    reconcile read it again rather than lose what was written meanwhile."""
    copied = list((populator.get("status") or {}).get(STAGES) or [])
    if any((s or {}).get("current") == stage.current for s in copied):
        return populator
    changes = {STAGES: [*copied, stage.to_dict()], contract.CLAIM_UID: claim_uid}
    return await _patch(kube, populator, changes, precondition=True)


async def _patch(kube: Kube, populator: Obj, changes: Obj, *, precondition: bool = False) -> Obj:
    """A merge patch of the status subresource; the CR as it now is. A CR deleted meanwhile
    is not an error (the reconcile that follows waits for it)."""
    meta = populator["metadata"]
    body: Obj = {"status": changes}
    if precondition:
        body["metadata"] = {"resourceVersion": meta["resourceVersion"]}
    try:
        updated = await kube.patch(
            POPULATORS[populator["kind"]],
            meta["name"],
            body,
            meta["namespace"],
            subresource="status",
        )
    except ApiException as exc:
        if not_found(exc):
            return populator
        raise
    updated.setdefault("kind", populator["kind"])
    return updated
