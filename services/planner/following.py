"""Following the progress service's disk and VM samples into the planner's status tables.

``DISK_PROGRESS`` and ``VM_PROGRESS`` come on core NATS (at most once, each superseding the
last), up to one per disk every few seconds: with 2,000 disks in flight that is some 400
samples a second. Writing each would be 400 transactions a second; instead the follower
keeps the newest sample per disk and per VM in memory and writes them every ``interval``
seconds in four statements whatever their number:

1. lock the VM rows concerned, in key order (the projector locks a VM before its steps and
   tasks; locking in one order everywhere means no deadlock);
2. the DiskTransfer task of each disk: bytes, rate, ETA and ``observed_at``, only from a
   sample newer than the stored one, and of a task already final only a missing total. The
   bytes are the sample's fraction of the task's own total (the disk's size, as the VM's
   total and the orchestrator's events count it): a populator that copies an image smaller
   than its disk (OpenStack sizes are whole GiB) counts the image's bytes, and its bar
   would otherwise jump from "64 MiB of 64 MiB" to "1 GiB of 1 GiB" when the step ends.
   A task whose total is not known yet takes the sample's;
3. those steps' progress again as the sum of their tasks;
4. the VMs: bytes from their DiskTransfer step (every byte once Succeeded), rate and ETA
   from the VM samples (none once final), and a new revision where anything changed.

A sample lost (core NATS, a failed write) is superseded by the next one a few seconds later.
Every planner replica follows every sample; their writes agree, the ``observed_at`` guard
makes the second a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.planner.statusrows import RESUM_STEPS, inline
from shared import catalog
from shared import envelope as env
from shared.bus import Bus
from shared.db.engine import values
from shared.payloads import DiskProgress, Step, StepState, VmProgress
from shared.pipeline import PLAN_VM_FINAL, WORKING_STEP_STATES, PlanVmPhase

log = logging.getLogger("hoist.planner.following")

LOCK_VMS = text(
    """
    SELECT v.migration_id, v.vm_id FROM planner.vms AS v
    JOIN unnest(CAST(:migration_id AS text[]), CAST(:vm_id AS text[])) AS k(migration_id, vm_id)
      ON v.migration_id = k.migration_id AND v.vm_id = k.vm_id
    ORDER BY v.migration_id, v.vm_id
    FOR UPDATE OF v
    """
)

# Step states, the step and VM phases are bound, not spelled: rendered inline at execution
# (``values()``, ``inline()``), so PostgreSQL gets the same text as when they were literals.
UPDATE_TASKS = text(
    """
    UPDATE planner.tasks AS t SET
        progress_completed = CASE
            WHEN t.state IN :working AND t.progress_total > 0 AND s.total > 0
            THEN least(t.progress_total,
                       CAST(CAST(s.done AS numeric) * t.progress_total / s.total AS bigint))
            WHEN t.state IN :working THEN s.done
            WHEN t.state = :completed AND t.progress_total = 0 THEN s.total
            ELSE t.progress_completed END,
        progress_total = CASE
            WHEN t.progress_total = 0 AND s.total > 0 THEN s.total
            ELSE t.progress_total END,
        rate = CASE WHEN t.state IN :working THEN s.rate ELSE t.rate END,
        eta_seconds = CASE WHEN t.state IN :working THEN s.eta
                           ELSE t.eta_seconds END,
        observed_at = CASE WHEN t.state IN :working THEN s.observed_at
                           ELSE t.observed_at END,
        updated_at = now()
    FROM unnest(
        CAST(:migration_id AS text[]), CAST(:vm_id AS text[]), CAST(:task AS text[]),
        CAST(:done AS bigint[]), CAST(:total AS bigint[]), CAST(:rate AS bigint[]),
        CAST(:eta AS integer[]), CAST(:observed_at AS timestamptz[])
    ) AS s(migration_id, vm_id, task, done, total, rate, eta, observed_at)
    WHERE t.migration_id = s.migration_id AND t.vm_id = s.vm_id
      AND t.step = :transfer AND t.task = s.task
      AND CASE WHEN t.state IN :working
               THEN t.observed_at IS NULL OR t.observed_at < s.observed_at
               ELSE t.progress_total = 0 AND s.total > 0 END
    RETURNING t.migration_id, t.vm_id
    """
).bindparams(
    values("working", WORKING_STEP_STATES),
    inline("completed", StepState.COMPLETED),
    inline("transfer", Step.DISK_TRANSFER),
)

UPDATE_VMS = text(
    """
    UPDATE planner.vms AS v SET
        bytes_done = n.bytes_done, bytes_total = n.bytes_total, rate = n.rate,
        eta_seconds = n.eta, revision = nextval('planner.revision_seq'), updated_at = now()
    FROM (
        SELECT v0.migration_id, v0.vm_id, b.total AS bytes_total,
               CASE WHEN v0.phase = :succeeded THEN b.total
                    ELSE coalesce(st.progress_completed, v0.bytes_done) END AS bytes_done,
               CASE WHEN v0.phase IN :final THEN NULL
                    WHEN k.sampled THEN k.rate ELSE v0.rate END AS rate,
               CASE WHEN v0.phase IN :final THEN NULL
                    WHEN k.sampled THEN k.eta ELSE v0.eta_seconds END AS eta
        FROM unnest(
            CAST(:migration_id AS text[]), CAST(:vm_id AS text[]), CAST(:sampled AS boolean[]),
            CAST(:rate AS bigint[]), CAST(:eta AS integer[])
        ) AS k(migration_id, vm_id, sampled, rate, eta)
        JOIN planner.vms AS v0 ON v0.migration_id = k.migration_id AND v0.vm_id = k.vm_id
        LEFT JOIN planner.steps AS st ON st.migration_id = k.migration_id
            AND st.vm_id = k.vm_id AND st.step = :transfer
        CROSS JOIN LATERAL (SELECT CASE WHEN st.progress_total > 0 THEN st.progress_total
                                        ELSE v0.bytes_total END AS total) AS b
    ) AS n
    WHERE v.migration_id = n.migration_id AND v.vm_id = n.vm_id
      AND (v.bytes_done, v.bytes_total, v.rate, v.eta_seconds)
          IS DISTINCT FROM (n.bytes_done, n.bytes_total, n.rate, n.eta)
    """
).bindparams(
    inline("succeeded", PlanVmPhase.SUCCEEDED),
    values("final", PLAN_VM_FINAL),
    inline("transfer", Step.DISK_TRANSFER),
)

Key = tuple[str, str]


def _int(value: float | None, up: bool = False) -> int | None:
    if value is None:
        return None
    return math.ceil(value) if up else round(value)


class ProgressFollower:
    """Keeps the newest progress sample per disk and VM; writes them every ``interval``."""

    def __init__(self, bus: Bus, engine: AsyncEngine, interval: float = 1.0) -> None:
        self.bus = bus
        self.engine = engine
        self.interval = interval
        self._disks: dict[tuple[str, str, str], DiskProgress] = {}
        self._vms: dict[Key, VmProgress] = {}
        self._subs: list[Any] = []
        self._loop: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.statements = 0  # writes issued (tests, benchmarks)
        self.samples = 0

    async def start(self) -> None:
        self._subs = [
            await self.bus.subscribe_core(catalog.DISK_PROGRESS, self.on_event),
            await self.bus.subscribe_core(catalog.VM_PROGRESS, self.on_event),
        ]
        self._loop = asyncio.create_task(self._run(), name="planner-progress")

    async def stop(self) -> None:
        """Stop listening, then write what is buffered."""
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs = []
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        try:
            await self.flush()
        except Exception as exc:
            log.warning("last progress samples not stored (%s)", exc)

    async def on_event(self, event: env.Envelope[Any]) -> None:
        data = event.data
        self.samples += 1
        if isinstance(data, DiskProgress):
            key = (data.migration_id, data.vm_id, data.disk_id)
            held = self._disks.get(key)
            if held is None or held.observed_at < data.observed_at:
                self._disks[key] = data
        elif isinstance(data, VmProgress):
            vkey = (data.migration_id, data.vm_id)
            was = self._vms.get(vkey)
            if was is None or was.observed_at < data.observed_at:
                self._vms[vkey] = data

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception as exc:
                log.warning("progress not stored (%s); newer samples follow", exc)

    async def flush(self) -> int:
        """Write the buffered samples; returns how many statements that took."""
        async with self._lock:
            disks, self._disks = self._disks, {}
            vms, self._vms = self._vms, {}
            if not disks and not vms:
                return 0
            try:
                return await self._write(disks, vms)
            except Exception:
                # Keep them for the next round unless newer ones came meanwhile.
                for k, d in disks.items():
                    self._disks.setdefault(k, d)
                for vk, v in vms.items():
                    self._vms.setdefault(vk, v)
                raise

    async def _write(
        self, disks: dict[tuple[str, str, str], DiskProgress], vms: dict[Key, VmProgress]
    ) -> int:
        keys = sorted({(m, v) for m, v, _ in disks} | set(vms))
        count = 0
        async with self.engine.begin() as conn:
            await conn.execute(
                LOCK_VMS, {"migration_id": [k[0] for k in keys], "vm_id": [k[1] for k in keys]}
            )
            count += 1
            if disks:
                samples = list(disks.values())
                touched = await conn.execute(
                    UPDATE_TASKS,
                    {
                        "migration_id": [d.migration_id for d in samples],
                        "vm_id": [d.vm_id for d in samples],
                        "task": [d.disk_id for d in samples],
                        "done": [d.bytes_done for d in samples],
                        "total": [d.bytes_total for d in samples],
                        "rate": [_int(d.rate_bytes_per_second) for d in samples],
                        "eta": [_int(d.eta_seconds, up=True) for d in samples],
                        "observed_at": [d.observed_at for d in samples],
                    },
                )
                changed = sorted({(str(r[0]), str(r[1])) for r in touched})
                count += 1
                if changed:
                    await conn.execute(
                        RESUM_STEPS,
                        {
                            "migration_id": [k[0] for k in changed],
                            "vm_id": [k[1] for k in changed],
                            "step": [Step.DISK_TRANSFER.value] * len(changed),
                        },
                    )
                    count += 1
            got = [vms.get(k) for k in keys]
            await conn.execute(
                UPDATE_VMS,
                {
                    "migration_id": [k[0] for k in keys],
                    "vm_id": [k[1] for k in keys],
                    "sampled": [g is not None for g in got],
                    "rate": [_int(g.rate_bytes_per_second) if g else None for g in got],
                    "eta": [_int(g.eta_seconds, up=True) if g else None for g in got],
                },
            )
            count += 1
        self.statements += count
        return count
