"""Writing a populator CR's ``status`` (``shared.populator.Status``: what the pipeline reads
to learn how a disk is doing).

Only fields that changed are written (a merge patch of the status subresource), so a
reconcile that finds nothing new writes nothing, and the CR watch the write triggers ends
there. ``claimUID`` ties a status to the claim it is about: a CR that still carries the
status of an earlier claim (a re-run reusing the name) is reset rather than believed.
"""

from __future__ import annotations

import logging
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from services.controller.kubeapi import Kube, Obj
from shared import populator as contract

log = logging.getLogger("hoist.controller.status")


def is_final_failure(populator: Obj, claim_uid: str) -> bool:
    return contract.Status.of(populator).is_final_failure(claim_uid)


def is_stale(populator: Obj, claim_uid: str) -> bool:
    return contract.Status.of(populator).is_stale(claim_uid)


async def write(kube: Kube, populator: Obj, claim_uid: str, **fields: Any) -> Obj:
    """Set the given status fields (API spelling) and ``claimUID``; returns the CR as it now
    is. Compared with the status as written, not as read back into ``Status``, so a field
    someone wrote oddly is rewritten rather than assumed equal.

    A CR deleted meanwhile is not an error: the reconcile that follows waits for it."""
    current = dict(populator.get("status") or {})
    wanted = {**fields, contract.CLAIM_UID: claim_uid}
    if "log" in wanted:
        wanted["log"] = contract.tail(str(wanted["log"]))
    changes = {k: v for k, v in wanted.items() if current.get(k) != v}
    if not changes:
        return populator
    meta = populator["metadata"]
    try:
        updated = await kube.patch_populator_status(
            populator["kind"], meta["namespace"], meta["name"], {"status": changes}
        )
    except ApiException as exc:
        if exc.status == 404:
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
            wanted.get("reason", ""),
        )
    return updated
