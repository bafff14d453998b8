"""Which VM may start now: admitted before its source is touched, within the plan's limits.

What the user counts on: no more than ``maxVmsInFlight`` VMs of a plan are between their
admission and their target VM's creation, so no more than that many source VMs are down
because of Hoist at once; a VM that is not admitted waits in ``Queued`` with its source
running and untouched. Admission is therefore the first thing a VM's pipeline does, before
Initialize and PowerOffSource (and the OpenStack snapshots, whose storage on the source is
bounded the same way).

An admitted VM holds, in ``orchestrator.vms`` (so every replica and a restarted one count the
same):

- a VM slot (``holds_vm``) until its target VM exists, or until a failed or canceled VM's
  teardown has given the source back (its source is down until then);
- ``len(disks)`` disk slots (``holding``) until its disks are copied; a failure or cancel
  frees them at once.

The limits: the plan's ``max_vms_in_flight`` and ``max_disks_in_flight``, and
``max_disks_in_flight_per_source`` over every plan on the same source provider. A VM with
more disks than a limit is still admitted when its plan (or source) holds nothing, otherwise
it could never run. Within a plan VMs go in the plan's order; across plans on one source, a
slot goes to the plan holding the fewest disks, so a plan started later is not starved by a
big one. Nothing is admitted before the plan's cutover (cold migration copies only after the
power-off, so holding slots earlier would only keep other VMs waiting).

Admission runs under a transaction-scoped advisory lock per source provider: two replicas
never admit past a limit together. A waiting VM learns why, its place in line and an
estimate of when it starts; the estimate is the plan's mean time from admission to release
so far (or the source's, early in a plan) times the waves ahead of it.

Called by the runner (``runner.py``) before a VM's first step, a side call of it: an
admitted VM goes on to its first steps.

Next: services/orchestrator/preparing.py
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.engine import values
from shared.payloads import WaitReason
from shared.pipeline import VM_WAITING

_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
_NOW = text("SELECT now()")
_HELD = text(
    """
    SELECT migration_id, COALESCE(sum(holding), 0) AS disks,
           count(*) FILTER (WHERE holds_vm) AS vms
    FROM orchestrator.vms
    WHERE source_provider = :source AND (holding > 0 OR holds_vm)
    GROUP BY migration_id
    """
)
# A VM waits for admission while it is unfinished (``VM_WAITING``), not admitted and not
# being canceled: ``admitted_at IS NULL AND phase IN :waiting AND NOT cancel_requested``, the
# predicate of the ``vms_waiting`` index. The phases are bound with ``values()``, rendered
# inline, so PostgreSQL sees the index's own predicate text and keeps using it.
_AHEAD = text(
    """
    SELECT count(*) FROM orchestrator.vms v
    WHERE v.migration_id = :migration AND v.position < :position
      AND v.admitted_at IS NULL AND v.phase IN :waiting AND NOT v.cancel_requested
    """
).bindparams(values("waiting", VM_WAITING))
# Other plans with a VM waiting on this source whose cutover has come: their smallest
# waiting VM and their own limits.
_WAITING_PLANS = text(
    """
    SELECT v.migration_id,
           min(jsonb_array_length(v.spec->'disks')) AS smallest,
           (m.header->>'max_disks_in_flight')::int AS disk_limit,
           COALESCE((m.header->>'max_vms_in_flight')::int, 20) AS vm_limit
    FROM orchestrator.vms v JOIN orchestrator.migrations m ON m.id = v.migration_id
    WHERE v.source_provider = :source AND v.migration_id <> :migration
      AND v.admitted_at IS NULL AND v.phase IN :waiting AND NOT v.cancel_requested
      AND (m.cutover IS NULL OR m.cutover <= now())
    GROUP BY v.migration_id, m.header
    """
).bindparams(values("waiting", VM_WAITING))
_TAKE = text(
    """
    UPDATE orchestrator.vms
    SET holding = :n, holds_vm = :vm_slot, admitted_at = now(), released_at = NULL
    WHERE migration_id = :migration AND vm_id = :vm AND admitted_at IS NULL
    """
)
# A warm VM going down: its VM slot, taken at its power-off (it precopied without one).
_TAKE_VM = text(
    """
    UPDATE orchestrator.vms SET holds_vm = true, released_at = NULL
    WHERE migration_id = :migration AND vm_id = :vm AND NOT holds_vm
    """
)
_PLAN_VMS = text(
    "SELECT count(*) FROM orchestrator.vms WHERE migration_id = :migration AND holds_vm"
)
# How long an admitted VM held its VM slot: this plan's so far, else the source's lately.
_MEAN_HOLD = text(
    """
    SELECT COALESCE(
        (SELECT avg(extract(epoch FROM released_at - admitted_at)) FROM orchestrator.vms
         WHERE migration_id = :migration AND released_at IS NOT NULL
           AND admitted_at IS NOT NULL),
        (SELECT avg(extract(epoch FROM released_at - admitted_at)) FROM orchestrator.vms
         WHERE source_provider = :source AND released_at > now() - interval '1 day'
           AND admitted_at IS NOT NULL)
    ) AS mean,
    (SELECT avg(extract(epoch FROM now() - admitted_at)) FROM orchestrator.vms
     WHERE migration_id = :migration AND holds_vm) AS elapsed
    """
)
# The first waiting VM of each plan on a source: the ones a freed slot can go to.
_HEADS = text(
    """
    UPDATE orchestrator.vms SET next_run_at = now()
    WHERE (migration_id, vm_id) IN (
        SELECT DISTINCT ON (v.migration_id) v.migration_id, v.vm_id
        FROM orchestrator.vms v
        WHERE v.source_provider = :source
          AND v.admitted_at IS NULL AND v.phase IN :waiting AND NOT v.cancel_requested
        ORDER BY v.migration_id, v.position
    ) AND next_run_at > now()
    """
).bindparams(values("waiting", VM_WAITING))
_NEXT_OF_PLAN = text(
    """
    UPDATE orchestrator.vms SET next_run_at = now()
    WHERE (migration_id, vm_id) IN (
        SELECT v.migration_id, v.vm_id FROM orchestrator.vms v
        WHERE v.migration_id = :migration
          AND v.admitted_at IS NULL AND v.phase IN :waiting AND NOT v.cancel_requested
        ORDER BY v.position LIMIT 1
    ) AND next_run_at > now()
    """
).bindparams(values("waiting", VM_WAITING))

LONGEST_WAIT = 15
"""Without an estimate yet, a VM far back in line looks again after one poll per wave
ahead of it, at most ``LONGEST_WAIT`` polls."""
LONGEST_WAIT_SECONDS = 300.0
"""With an estimate, a VM behind the first in line looks again after half its estimated
wait, at most this long. A freed slot wakes the first in line at once (``wake_heads``) and
each admission the next (``_NEXT_OF_PLAN``), so no VM needs its own look to start: it only
refreshes its place and estimate. Halving keeps a 1,000-VM line at about ten looks per VM
(each one an admission transaction and, when its place changed, a step event) instead of
one every 30 s for as long as it waits, which grew with the square of the plan."""


@dataclass(frozen=True)
class Request:
    """One VM asking to start."""

    migration_id: str
    vm_id: str
    source_provider: str
    position: int
    disks: int
    vm_limit: int
    plan_limit: int
    source_limit: int
    cutover: datetime | None = None
    warm: bool = False
    """A warm VM: admitted for its precopies (disk slots) before the cutover, its source
    still running; its VM slot is taken at its power-off (``take_vm_slot``)."""


@dataclass(frozen=True)
class Decision:
    admitted: bool
    reason: WaitReason | None = None
    why: str = ""
    held: int = 0
    limit: int = 0
    place: int = 0
    estimated_start: datetime | None = None
    retry_after: float = 0.0
    cutover: datetime | None = None

    def detail(self) -> dict[str, Any]:
        """The waiting VM's step detail: a sentence for people, the parts for programs."""
        return {
            "note": self.note(),
            "waiting": {
                "reason": self.reason.value if self.reason else None,
                "held": self.held,
                "limit": self.limit,
                "place": self.place,
                "estimatedStart": _iso(self.estimated_start),
                "cutover": _iso(self.cutover),
            },
        }

    def note(self) -> str:
        parts = [f"waiting: {self.why}"]
        if self.place:
            parts.append(f"{_ordinal(self.place)} in line")
        if self.estimated_start is not None and self.reason is not WaitReason.CUTOVER:
            parts.append(f"starts about {self.estimated_start:%Y-%m-%d %H:%M} UTC")
        return "; ".join(parts)


async def admit(session: AsyncSession, req: Request, *, poll: float) -> Decision:
    """Take the VM's slots in ``session``'s transaction, or say why it waits and for how long.

    ``poll``: the runner's rhythm; a waiting VM is called again after a multiple of it."""
    now: datetime = (await session.execute(_NOW)).scalar_one()
    place = 1 + int(
        (
            await session.execute(_AHEAD, {"migration": req.migration_id, "position": req.position})
        ).scalar_one()
    )
    if req.cutover is not None and req.cutover > now and not req.warm:
        remaining = (req.cutover - now).total_seconds()
        return Decision(
            False,
            WaitReason.CUTOVER,
            f"the plan's cutover is at {req.cutover:%Y-%m-%d %H:%M:%S} UTC",
            place=place,
            estimated_start=req.cutover,
            cutover=req.cutover,
            retry_after=max(poll, min(remaining, poll * LONGEST_WAIT)),
        )
    n = max(1, req.disks)
    await session.execute(_LOCK, {"key": _key(req.source_provider)})
    disks: dict[str, int] = {}
    vms: dict[str, int] = {}
    for r in await session.execute(_HELD, {"source": req.source_provider}):
        disks[r.migration_id] = int(r.disks)
        vms[r.migration_id] = int(r.vms)
    in_source = sum(disks.values())
    plan_disks = disks.get(req.migration_id, 0)
    plan_vms = vms.get(req.migration_id, 0)

    blocked: tuple[WaitReason, str, int, int, int] | None = None  # reason, why, held, limit, slots
    if plan_vms >= req.vm_limit and not req.warm:
        blocked = (
            WaitReason.PLAN_VMS,
            f"the plan has {plan_vms} of {req.vm_limit} VMs in flight",
            plan_vms,
            req.vm_limit,
            req.vm_limit,
        )
    elif plan_disks and plan_disks + n > req.plan_limit:
        blocked = (
            WaitReason.PLAN_DISKS,
            f"the plan has {plan_disks} of {req.plan_limit} disks in flight",
            plan_disks,
            req.plan_limit,
            max(1, req.plan_limit // n),
        )
    elif in_source and in_source + n > req.source_limit:
        blocked = (
            WaitReason.SOURCE_DISKS,
            f"the source provider has {in_source} of {req.source_limit} disks in flight",
            in_source,
            req.source_limit,
            max(1, req.source_limit // n),
        )
    elif place > 1:
        # The slot is the earlier VM's: it goes first (and is woken to take it now).
        await session.execute(_NEXT_OF_PLAN, {"migration": req.migration_id})
        blocked = (
            WaitReason.IN_LINE,
            f"{place - 1} VM(s) of the plan are ahead",
            plan_vms,
            req.vm_limit,
            req.vm_limit,
        )
    else:
        for row in await session.execute(
            _WAITING_PLANS, {"source": req.source_provider, "migration": req.migration_id}
        ):
            other = row.migration_id
            other_disks = disks.get(other, 0)
            can_take = vms.get(other, 0) < int(row.vm_limit) and (
                not other_disks
                or other_disks + int(row.smallest or 1) <= int(row.disk_limit or req.plan_limit)
            )
            if can_take and other_disks < plan_disks:
                blocked = (
                    WaitReason.FAIRNESS,
                    "another plan on the same source holds fewer disks; it goes first",
                    plan_disks,
                    req.plan_limit,
                    max(1, req.plan_limit // n),
                )
                break
    if blocked is None:
        await session.execute(
            _TAKE,
            {"n": n, "vm_slot": not req.warm, "migration": req.migration_id, "vm": req.vm_id},
        )
        # The next VM of the plan may fit too: it need not wait for its poll to find out.
        await session.execute(_NEXT_OF_PLAN, {"migration": req.migration_id})
        return Decision(True)
    reason, why, held, limit, slots = blocked
    waves = math.ceil(place / max(1, slots))
    estimate = await _estimate(session, req, now, waves)
    return Decision(
        False,
        reason,
        why,
        held=held,
        limit=limit,
        place=place,
        estimated_start=estimate,
        retry_after=_retry_after(poll, now, estimate, waves, place),
    )


def _retry_after(
    poll: float, now: datetime, estimate: datetime | None, waves: int, place: int
) -> float:
    """When a VM that may not start yet looks again (``LONGEST_WAIT_SECONDS``)."""
    if place <= 1:
        return poll  # first in line: its slot may free at any time (it is also woken)
    if estimate is None:
        return poll * min(LONGEST_WAIT, max(1, waves))
    remaining = (estimate - now).total_seconds()
    return min(LONGEST_WAIT_SECONDS, max(poll, remaining / 2))


async def take_vm_slot(session: AsyncSession, req: Request, *, poll: float) -> Decision:
    """A warm VM about to be powered off takes its VM slot, or waits (its source still
    running, precopied) while ``max_vms_in_flight`` VMs of its plan are down."""
    await session.execute(_LOCK, {"key": _key(req.source_provider)})
    held = int((await session.execute(_PLAN_VMS, {"migration": req.migration_id})).scalar_one())
    if held >= req.vm_limit:
        return Decision(
            False,
            WaitReason.PLAN_VMS,
            f"the plan has {held} of {req.vm_limit} VMs down",
            held=held,
            limit=req.vm_limit,
            retry_after=poll,
        )
    await session.execute(_TAKE_VM, {"migration": req.migration_id, "vm": req.vm_id})
    return Decision(True)


async def wake_heads(session: AsyncSession, source_provider: str) -> None:
    """Slots on ``source_provider`` were freed: the first waiting VM of each plan there is
    called at once, rather than at its next poll."""
    await session.execute(_HEADS, {"source": source_provider})


async def _estimate(
    session: AsyncSession, req: Request, now: datetime, waves: int
) -> datetime | None:
    row = (
        await session.execute(
            _MEAN_HOLD, {"migration": req.migration_id, "source": req.source_provider}
        )
    ).one()
    if row.mean is None:
        return None  # nothing has finished yet: no honest guess
    mean = float(row.mean)
    elapsed = float(row.elapsed or 0.0)
    seconds = max(0.0, waves * mean - min(elapsed, mean))
    # To the minute: a note that changed every poll would be a step event every poll.
    at = now + timedelta(seconds=seconds + 59)
    return at.replace(second=0, microsecond=0)


def _key(source_provider: str) -> int:
    # A signed 64-bit key, stable across processes (hash() is salted per process).
    return zlib.crc32(f"hoist-admission:{source_provider}".encode()) - (1 << 31)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
