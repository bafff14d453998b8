"""A populator CR's ``status``: what the pipeline reads to learn how a disk is doing, and
the schema the CRD declares for it (from the same table, so the two cannot drift)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from shared.populator.kinds import Obj, Phase

CLAIM_UID = "claimUID"
"""The status field naming the claim a status is about (the one not spelled like its
attribute)."""

STATUS_FIELDS: tuple[tuple[str, str, Obj], ...] = (
    (
        "phase",
        "phase",
        {
            "type": "string",
            "enum": [p.value for p in Phase],
            "description": "Failed and Succeeded are final.",
        },
    ),
    (
        "progress",
        "progress",
        {
            "type": "string",
            "description": "Integer percent as a string (Forklift's field); 100 when done.",
        },
    ),
    ("reason", "reason", {"type": "string", "description": "CamelCase cause of the phase."}),
    ("message", "message", {"type": "string"}),
    (
        "log",
        "log",
        {
            "type": "string",
            "description": "The end (16 KiB at most) of the last failed populator pod's log.",
        },
    ),
    (
        "recreations",
        "recreations",
        {
            "type": "integer",
            "minimum": 0,
            "description": "How often a failed populator pod was replaced.",
        },
    ),
    ("pod", "pod", {"type": "string", "description": "The populator pod (the latest)."}),
    (
        "claim_uid",
        CLAIM_UID,
        {
            "type": "string",
            "description": "UID of the claim this status is about (a status about another "
            "claim, of an earlier run, is stale and is reset).",
        },
    ),
)


@dataclass(frozen=True)
class Status:
    """A populator CR's ``status``, written by the controller only.

    ``phase`` keeps what was written even when it is no ``Phase`` (a newer controller's),
    so readers compare it with ``Phase`` members rather than trusting it to be one."""

    phase: str = Phase.PENDING.value
    progress: str = "0"
    reason: str = ""
    message: str = ""
    log: str = ""
    recreations: int = 0
    pod: str = ""
    claim_uid: str | None = None
    """The claim the status is about; a status naming another claim is stale."""

    LOG_LIMIT: ClassVar[int] = 16 * 1024

    @classmethod
    def of(cls, cr: Mapping[str, Any]) -> Status:
        """Tolerant: a CR without a status is Pending, odd values read as their default."""
        raw = cr.get("status") or {}
        try:
            recreations = max(0, int(raw.get("recreations") or 0))
        except (TypeError, ValueError):
            recreations = 0
        claim_uid = raw.get(CLAIM_UID)
        return cls(
            phase=str(raw.get("phase") or Phase.PENDING.value),
            progress="0" if raw.get("progress") is None else str(raw["progress"]),
            reason=str(raw.get("reason") or ""),
            message=str(raw.get("message") or ""),
            log=str(raw.get("log") or ""),
            recreations=recreations,
            pod=str(raw.get("pod") or ""),
            claim_uid=None if claim_uid is None else str(claim_uid),
        )

    def to_dict(self) -> Obj:
        """The API spelling (``claimUID``); without ``claimUID`` while it is None."""
        out = {key: getattr(self, attr) for attr, key, _ in STATUS_FIELDS}
        if self.claim_uid is None:
            del out[CLAIM_UID]
        return out

    def percent(self) -> int:
        """``progress`` as 0..100 (Forklift may write ``"42%"``); 0 when unreadable."""
        try:
            return max(0, min(100, int(str(self.progress or "0").rstrip("%"))))
        except ValueError:
            return 0

    def _about(self, claim_uid: str) -> bool:
        return self.claim_uid in (None, "", claim_uid)

    def is_final_failure(self, claim_uid: str) -> bool:
        return self.phase == Phase.FAILED and self._about(claim_uid)

    def is_stale(self, claim_uid: str) -> bool:
        """About another claim (an earlier run that reused the CR's name): reset it."""
        return not self._about(claim_uid)


def fresh() -> Obj:
    """The status a CR is reset to (Pending, nothing copied); without ``claimUID``."""
    return Status().to_dict()


def tail(text: str, limit: int = Status.LOG_LIMIT) -> str:
    """The end of a log, at most ``limit`` bytes of UTF-8, starting on a whole line."""
    data = text.encode()
    if len(data) <= limit:
        return text
    cut = data[-limit:]
    newline = cut.find(b"\n")
    if 0 <= newline < len(cut) - 1:
        cut = cut[newline + 1 :]
    return cut.decode(errors="replace")
