"""Turning samples into progress: rate and ETA, batched writes, downsampled history, events.

Samples of a round are buffered and written together every ``HOIST_PROGRESS_FLUSH_SECONDS``:
one ``UPDATE … FROM unnest(…)`` for the latest values of every disk scraped since the last
flush, and one ``INSERT … SELECT FROM unnest(…)`` for the history points that fell due (one
per disk per ``HOIST_PROGRESS_HISTORY_SECONDS``). A row is updated only while its ``rev`` is
the one the sample was taken under: a sample from a pod that has since been replaced or
finished is dropped rather than overwriting the newer truth.

Rate: the bytes copied between two samples over the seconds between them, smoothed
(exponentially, half weight to the newest) so one slow read does not make the ETA jump.
Counters going backwards mean the populator started again: the rate starts afresh.

Events: ``progress.disk`` when a disk's bytes, total, percent or state changed, at most once
per ``HOIST_PROGRESS_PUBLISH_MIN_SECONDS`` per disk (a change inside the window goes out
when it ends, so the last value is never lost); ``progress.vm`` for each VM with a disk
event in the same flush. A finished disk is announced at once.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.progress.scraping import Sample
from services.progress.targets import RUNNING, SUCCEEDED, Target
from shared import catalog
from shared.bus import Bus
from shared.payloads import DiskProgress, VmProgress
from shared.settings import ProgressSettings

log = logging.getLogger("hoist.progress.recording")

WRITES = Counter("hoist_progress_db_writes_total", "Write statements issued.", ["table"])

UPDATE_LATEST = text(
    """
    UPDATE progress.disks AS d SET
        bytes_done = v.bytes_done, total_bytes = v.total_bytes, percent = v.percent,
        rate = v.rate, eta_seconds = v.eta, observed_at = v.observed_at, updated_at = now()
    FROM unnest(
        CAST(:disk_id AS text[]), CAST(:rev AS bigint[]), CAST(:bytes_done AS bigint[]),
        CAST(:total_bytes AS bigint[]), CAST(:percent AS float8[]), CAST(:rate AS float8[]),
        CAST(:eta AS float8[]), CAST(:observed_at AS timestamptz[])
    ) AS v(disk_id, rev, bytes_done, total_bytes, percent, rate, eta, observed_at)
    WHERE d.disk_id = v.disk_id AND d.rev = v.rev AND d.state = 'running'
    """
)

INSERT_HISTORY = text(
    """
    INSERT INTO progress.history (disk_id, at, bytes_done, percent)
    SELECT * FROM unnest(
        CAST(:disk_id AS text[]), CAST(:at AS timestamptz[]), CAST(:bytes_done AS bigint[]),
        CAST(:percent AS float8[])
    )
    ON CONFLICT DO NOTHING
    """
)

EXPIRE_DISKS = text(
    """
    WITH gone AS (
        DELETE FROM progress.disks
        WHERE state <> 'running' AND coalesce(finished_at, updated_at) < :cutoff
        RETURNING disk_id
    )
    DELETE FROM progress.history AS h USING gone WHERE h.disk_id = gone.disk_id
    """
)
# Points older than the retention, even of disks still known (``ix_history_at`` finds them).
EXPIRE_HISTORY = text("DELETE FROM progress.history WHERE at < :cutoff")

PRUNE_HISTORY = text(
    """
    DELETE FROM progress.history AS h USING (
        SELECT disk_id, at, row_number() OVER (PARTITION BY disk_id ORDER BY at DESC) AS n
        FROM progress.history WHERE disk_id = ANY(CAST(:disk_ids AS text[]))
    ) AS old
    WHERE h.disk_id = old.disk_id AND h.at = old.at AND old.n > :keep
    """
)


@dataclass
class _Track:
    """What a replica remembers of a disk between samples (not stored)."""

    rev: int
    prev_bytes: int | None = None
    prev_at: float | None = None
    rate: float | None = None
    published: tuple[Any, ...] | None = None
    published_at: float = 0.0
    dirty: bool = False
    history_at: float = 0.0


class Recorder:
    def __init__(
        self,
        engine: AsyncEngine,
        bus: Bus,
        settings: ProgressSettings,
        targets: dict[str, Target],
        by_vm: dict[str, set[str]],
    ) -> None:
        self.engine = engine
        self.bus = bus
        self.settings = settings
        self.targets = targets
        self.by_vm = by_vm
        self._tracks: dict[str, _Track] = {}
        self._latest: dict[str, dict[str, Any]] = {}
        self._history: list[tuple[str, datetime, int, float]] = []
        self.statements = 0  # writes issued (for /metrics and the benchmark)
        self.samples = 0

    def _track(self, t: Target) -> _Track:
        tr = self._tracks.get(t.disk_id)
        if tr is None or tr.rev != t.rev:
            tr = _Track(rev=t.rev, history_at=tr.history_at if tr else 0.0)
            if t.observed_at is not None:
                tr.prev_bytes, tr.prev_at = t.bytes_done, t.observed_at.timestamp()
            self._tracks[t.disk_id] = tr
        return tr

    def forget(self, disk_id: str) -> None:
        self._tracks.pop(disk_id, None)
        self._latest.pop(disk_id, None)

    def record(self, t: Target, sample: Sample, at: float) -> None:
        """Take one scraped sample of ``t`` (taken at wall-clock ``at``)."""
        tr = self._track(t)
        total = sample.bytes_total or t.total_bytes
        if sample.bytes_done is not None:
            done = sample.bytes_done
        else:
            done = int((sample.percent or 0.0) * total / 100)
        if total > 0:
            percent = min(100.0, done * 100.0 / total)
            if sample.percent is not None and sample.percent < 100:
                percent = min(percent, 99.99)  # the populator has not synced yet
            elif sample.percent == 100:
                percent = 100.0
        else:
            percent = sample.percent or 0.0
        if tr.prev_bytes is not None and tr.prev_at is not None and at > tr.prev_at:
            if done >= tr.prev_bytes:
                now_rate = (done - tr.prev_bytes) / (at - tr.prev_at)
                tr.rate = now_rate if tr.rate is None else 0.5 * tr.rate + 0.5 * now_rate
            else:
                tr.rate = None  # counters went back: the populator started over
        tr.prev_bytes, tr.prev_at = done, at
        eta = (total - done) / tr.rate if tr.rate and total >= done else None
        observed = datetime.fromtimestamp(at, UTC)
        t.bytes_done, t.total_bytes, t.percent = done, total, percent
        t.rate, t.eta_seconds, t.observed_at = tr.rate, eta, observed
        self._latest[t.disk_id] = {
            "disk_id": t.disk_id,
            "rev": t.rev,
            "bytes_done": done,
            "total_bytes": total,
            "percent": percent,
            "rate": tr.rate,
            "eta": eta,
            "observed_at": observed,
        }
        if at - tr.history_at >= self.settings.history_seconds:
            tr.history_at = at
            self._history.append((t.disk_id, observed, done, percent))
        self.samples += 1
        self._note_change(t, tr)

    def _note_change(self, t: Target, tr: _Track) -> None:
        key = (t.bytes_done, t.total_bytes, round(t.percent, 2), t.state)
        if key != tr.published:
            tr.dirty = True

    def ended(self, t: Target) -> None:
        """``t`` left ``running`` (its row says so): announce it at the next flush."""
        tr = self._track(t)
        if t.state == SUCCEEDED:
            self._history.append((t.disk_id, datetime.now(UTC), t.bytes_done, t.percent))
        tr.published_at = 0.0
        self._note_change(t, tr)
        self._latest.pop(t.disk_id, None)

    # --- flushing ------------------------------------------------------------------------

    async def flush(self) -> None:
        """Write what was sampled since the last flush (two statements at most), then
        publish what changed."""
        latest, self._latest = list(self._latest.values()), {}
        points, self._history = self._history, []
        if latest or points:
            try:
                async with self.engine.begin() as conn:
                    if latest:
                        await conn.execute(UPDATE_LATEST, _columns(latest))
                        self.statements += 1
                        WRITES.labels("disks").inc()
                    if points:
                        await conn.execute(
                            INSERT_HISTORY,
                            {
                                "disk_id": [p[0] for p in points],
                                "at": [p[1] for p in points],
                                "bytes_done": [p[2] for p in points],
                                "percent": [p[3] for p in points],
                            },
                        )
                        self.statements += 1
                        WRITES.labels("history").inc()
            except Exception as exc:
                log.warning(
                    "could not store %d samples (%s); the next round writes newer ones",
                    len(latest),
                    exc,
                )
        await self._publish()

    async def expire(self) -> int:
        """Forget disks finished more than ``retention_days`` ago, and their history: what a
        migration copied stays in the planner's status; samples need not stay forever."""
        cutoff = datetime.now(UTC) - timedelta(days=self.settings.retention_days)
        async with self.engine.begin() as conn:
            await conn.execute(EXPIRE_DISKS, {"cutoff": cutoff})
            points = await conn.execute(EXPIRE_HISTORY, {"cutoff": cutoff})
        return int(points.rowcount or 0)

    async def prune(self, disk_ids: list[str]) -> None:
        """Keep at most ``history_points`` points per disk (the newest)."""
        if not disk_ids:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                PRUNE_HISTORY, {"disk_ids": disk_ids, "keep": self.settings.history_points}
            )

    async def _publish(self) -> None:
        now = time.monotonic()
        vms: set[str] = set()
        for disk_id, tr in self._tracks.items():
            if not tr.dirty or now - tr.published_at < self.settings.publish_min_seconds:
                continue
            t = self.targets.get(disk_id)
            if t is None:
                continue
            try:
                await self.bus.publish(catalog.DISK_PROGRESS, disk_payload(t))
            except Exception as exc:
                log.debug("progress event of disk %s not sent: %s", disk_id, exc)
                continue
            tr.dirty = False
            tr.published_at = now
            tr.published = (t.bytes_done, t.total_bytes, round(t.percent, 2), t.state)
            vms.add(t.vm_id)
        for vm_id in vms:
            disks = [self.targets[d] for d in self.by_vm.get(vm_id, ()) if d in self.targets]
            if disks:
                try:
                    await self.bus.publish(catalog.VM_PROGRESS, vm_payload(disks))
                except Exception as exc:
                    log.debug("progress event of VM %s not sent: %s", vm_id, exc)


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        for key, value in row.items():
            cols[key].append(value)
    return dict(cols)


def disk_payload(t: Target) -> DiskProgress:
    return DiskProgress(
        plan_id=t.plan_id,
        migration_id=t.migration_id,
        vm_id=t.vm_id,
        disk_id=t.disk_id,
        bytes_done=max(0, t.bytes_done),
        bytes_total=max(0, t.total_bytes),
        percent=max(0.0, min(100.0, t.percent)),
        rate_bytes_per_second=t.rate if t.state == RUNNING else None,
        eta_seconds=t.eta_seconds if t.eta_seconds is None else max(0.0, t.eta_seconds),
        observed_at=t.observed_at or datetime.now(UTC),
    )


def vm_totals(disks: Sequence[Any]) -> dict[str, Any]:
    """Disks summed (a VM, a plan): ``Target``s or database rows alike."""
    done = sum(d.bytes_done for d in disks)
    total = sum(d.total_bytes for d in disks)
    rates = [d.rate for d in disks if d.state == RUNNING and d.rate is not None]
    rate = sum(rates) if rates else None
    left = max(0, total - done)
    finished = all(d.state == SUCCEEDED for d in disks)
    return {
        "disks_total": len(disks),
        "disks_done": sum(1 for d in disks if d.state == SUCCEEDED),
        "bytes_done": done,
        "bytes_total": total,
        "percent": 100.0 if finished else (min(100.0, done * 100.0 / total) if total else 0.0),
        "rate_bytes_per_second": rate,
        "eta_seconds": (0.0 if finished else (left / rate if rate else None)),
    }


def vm_payload(disks: list[Target]) -> VmProgress:
    first = disks[0]
    observed = max((d.observed_at for d in disks if d.observed_at), default=None)
    return VmProgress(
        plan_id=first.plan_id,
        migration_id=first.migration_id,
        vm_id=first.vm_id,
        observed_at=observed or datetime.now(UTC),
        **vm_totals(disks),
    )
