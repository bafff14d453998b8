"""Which VM may start copying its disks now: limits per plan and per source, fair across plans.

A VM asks for admission when it reaches DiskAllocation and holds ``len(disks)`` slots until
its DiskTransfer ends (or it fails or is canceled); ``vms.holding`` records it, so the counts
survive a crash and every replica sees the same ones. Two limits apply:

- the plan's ``max_disks_in_flight``: disks of this migration held at once;
- the plan's ``max_disks_in_flight_per_source``: disks held from the same source provider
  by every running migration (the source's storage and imageio/Glance are what saturate).

A VM with more disks than a limit is still admitted when nothing else is held (otherwise it
could never run). Fairness: when several plans wait on the same source, a slot goes to the
plan holding the fewest disks now, so a plan started later is not starved by a big one.
Admission runs under a transaction-scoped advisory lock per source provider: two replicas
never admit past the limit together.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
_HELD = text(
    """
    SELECT migration_id, COALESCE(sum(holding), 0) AS held
    FROM orchestrator.vms
    WHERE source_provider = :source AND holding > 0
    GROUP BY migration_id
    """
)
# Migrations with a VM waiting for admission on this source (at DiskAllocation, holding
# nothing, not being torn down), with their smallest waiting VM and their own limit.
_WAITING = text(
    """
    SELECT v.migration_id,
           min(jsonb_array_length(v.spec->'disks')) AS smallest,
           (m.header->>'max_disks_in_flight')::int AS plan_limit
    FROM orchestrator.vms v JOIN orchestrator.migrations m ON m.id = v.migration_id
    WHERE v.source_provider = :source AND v.holding = 0 AND v.phase IN ('Queued', 'Running')
      AND v.step = 'DiskAllocation' AND NOT v.cancel_requested
    GROUP BY v.migration_id, m.header
    """
)
_TAKE = text(
    """
    UPDATE orchestrator.vms SET holding = :n
    WHERE migration_id = :migration AND vm_id = :vm AND holding = 0
    """
)


@dataclass(frozen=True)
class Decision:
    admitted: bool
    why: str = ""


async def admit(
    session: AsyncSession,
    *,
    migration_id: str,
    vm_id: str,
    source_provider: str,
    disks: int,
    plan_limit: int,
    source_limit: int,
) -> Decision:
    """Take ``disks`` slots for the VM in ``session``'s transaction, or say why not."""
    n = max(1, disks)
    await session.execute(_LOCK, {"key": _key(source_provider)})
    held = {
        r.migration_id: int(r.held)
        for r in await session.execute(_HELD, {"source": source_provider})
    }
    in_source = sum(held.values())
    in_plan = held.get(migration_id, 0)
    if in_plan and in_plan + n > plan_limit:
        return Decision(False, f"the plan has {in_plan} of {plan_limit} disks in flight")
    if in_source and in_source + n > source_limit:
        return Decision(
            False, f"the source provider has {in_source} of {source_limit} disks in flight"
        )
    # Fairness: another waiting plan that holds fewer disks (and may take one) goes first.
    for row in await session.execute(_WAITING, {"source": source_provider}):
        other = row.migration_id
        if other == migration_id:
            continue
        other_held = held.get(other, 0)
        other_limit = int(row.plan_limit or plan_limit)
        can_take = not other_held or other_held + int(row.smallest or 1) <= other_limit
        if can_take and other_held < in_plan:
            return Decision(
                False, "another plan on the same source holds fewer disks; it goes first"
            )
    await session.execute(_TAKE, {"n": n, "migration": migration_id, "vm": vm_id})
    return Decision(True)


def _key(source_provider: str) -> int:
    # A signed 64-bit key, stable across processes (hash() is salted per process).
    return zlib.crc32(f"hoist-admission:{source_provider}".encode()) - (1 << 31)
