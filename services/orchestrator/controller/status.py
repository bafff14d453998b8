"""The populator CR's ``status``: what the pipeline reads to learn how a disk is doing.

Only fields that changed are written (a merge patch of the status subresource), so a
reconcile that finds nothing new writes nothing, and the CR watch the write triggers ends
there. ``claimUID`` ties a status to the claim it is about: a CR that still carries the
status of an earlier claim (a re-run reusing the name) is reset rather than believed.
"""

from __future__ import annotations

import logging
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from services.orchestrator import naming
from services.orchestrator.controller.kubeapi import Kube, Obj

log = logging.getLogger("hoist.controller.status")

LOG_LIMIT = 16 * 1024

FRESH: dict[str, Any] = {
    "phase": naming.PHASE_PENDING,
    "progress": "0",
    "reason": "",
    "message": "",
    "log": "",
    "recreations": 0,
    "pod": "",
}


def of(populator: Obj) -> dict[str, Any]:
    return dict(populator.get("status") or {})


def is_final_failure(populator: Obj, claim_uid: str) -> bool:
    status = of(populator)
    return status.get("phase") == naming.PHASE_FAILED and status.get("claimUID") in (
        None,
        "",
        claim_uid,
    )


def is_stale(populator: Obj, claim_uid: str) -> bool:
    return of(populator).get("claimUID") not in (None, "", claim_uid)


def tail(text: str, limit: int = LOG_LIMIT) -> str:
    """The end of a log, at most ``limit`` bytes of UTF-8, starting on a whole line."""
    data = text.encode()
    if len(data) <= limit:
        return text
    cut = data[-limit:]
    newline = cut.find(b"\n")
    if 0 <= newline < len(cut) - 1:
        cut = cut[newline + 1 :]
    return cut.decode(errors="replace")


async def write(kube: Kube, populator: Obj, claim_uid: str, **fields: Any) -> Obj:
    """Set the given status fields (and ``claimUID``); returns the CR as it now is.

    A CR deleted meanwhile is not an error: the reconcile that follows waits for it."""
    current = of(populator)
    wanted = {**fields, "claimUID": claim_uid}
    if "log" in wanted:
        wanted["log"] = tail(str(wanted["log"]))
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
