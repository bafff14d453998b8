"""Writing a populator CR's ``status`` (``shared.populator.Status``: what the pipeline reads
to learn how a disk is doing).

Only fields that changed are written (a merge patch of the status subresource), so a
reconcile that finds nothing new writes nothing, and the CR watch the write triggers ends
there. ``claimUID`` ties a status to the claim it is about: a CR that still carries the
status of an earlier claim (a re-run reusing the name) is reset rather than believed.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from shared import populator as contract
from shared.kube import POPULATORS, Kube, Obj, not_found
from shared.populator import SourceRef

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
    meta = populator["metadata"]
    try:
        updated = await kube.patch(
            POPULATORS[populator["kind"]],
            meta["name"],
            {"status": changes},
            meta["namespace"],
            subresource="status",
        )
    except ApiException as exc:
        if not_found(exc):
            return populator
        raise
    updated.setdefault("kind", populator["kind"])
    if "phase" in changes:
        log.info(
            "%s %s/%s: %s %s",
            populator["kind"],
            meta["namespace"],
            meta["name"],
            changes["phase"],
            target.get("reason", ""),
        )
    return updated
