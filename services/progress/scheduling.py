"""The scrape loop of one replica: which pods it owns, when each is due, workers, flushes.

Timing: each pod has a fixed phase in the interval (a hash of its disk id), so 2,000 pods
spread evenly over the 5 s instead of firing together, and its next scrape is due one
interval after the last *due time* (not after the last finish), so slow answers do not make
the schedule drift. A pod this replica gains while running (a new pod, a replica gone) is
scraped within a quarter interval, then settles into the rhythm.

Bounded work: a fixed pool of ``HOIST_PROGRESS_CONCURRENCY`` workers takes due pods from a
queue; a scrape has ``HOIST_PROGRESS_TIMEOUT_SECONDS``. A pod that fails (gone, refusing,
garbage) is logged at most once a minute with the number of failures in between, and is
tried again next round: it stays a target until its row says it finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import logging
import random
import time

from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncEngine

from services.progress import targets as tg
from services.progress.recording import Recorder
from services.progress.scraping import Fetcher, ScrapeError, parse
from services.progress.sharding import Membership
from services.progress.targets import RUNNING, Target
from shared.clusters import ClusterUnavailable
from shared.settings import ProgressSettings

log = logging.getLogger("hoist.progress.scrape")

SCRAPES = Counter("hoist_progress_scrapes_total", "Scrapes of populator pods.", ["result"])
OWNED = Gauge("hoist_progress_owned_pods", "Running populator pods this replica scrapes.")
COMPLAIN_EVERY = 60.0
PRUNE_EVERY = 600.0


def phase(disk_id: str) -> float:
    """A stable fraction of the interval in [0, 1) for this disk."""
    digest = hashlib.blake2b(disk_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest) / 2**32


class Scheduler:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: ProgressSettings,
        fetcher: Fetcher,
        recorder: Recorder,
        membership: Membership,
        targets: dict[str, Target],
        by_vm: dict[str, set[str]],
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.fetcher = fetcher
        self.recorder = recorder
        self.membership = membership
        self.targets = targets
        self.by_vm = by_vm
        self.interval = settings.scrape_seconds
        self.rev = 0
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._members_version = -1
        self._complaints: dict[str, tuple[float, int]] = {}
        self.synced = asyncio.Event()

    # --- ownership -----------------------------------------------------------------------

    def owns(self, t: Target) -> bool:
        return t.state == RUNNING and self.membership.owns(t.vm_id)

    def _schedule(self, disk_id: str, at: float) -> None:
        self._due[disk_id] = at
        heapq.heappush(self._heap, (at, disk_id))
        self._wake.set()

    def _soon(self) -> float:
        return time.monotonic() + random.uniform(0, self.interval / 4)

    async def sync(self) -> None:
        """Read rows changed since the last sync; (re)schedule what this replica owns."""
        async with self.engine.connect() as conn:
            changed = await tg.load_since(conn, self.rev)
        first = not self.synced.is_set()
        for row in changed:
            self.rev = max(self.rev, row.rev)
            old = self.targets.get(row.disk_id)
            if old is not None and old.vm_id != row.vm_id:
                self.by_vm.get(old.vm_id, set()).discard(row.disk_id)
            if old is not None and old.rev == row.rev:
                continue
            self.targets[row.disk_id] = row
            self.by_vm.setdefault(row.vm_id, set()).add(row.disk_id)
            if row.state != RUNNING:
                self._due.pop(row.disk_id, None)
                if old is not None and old.state == RUNNING and self.membership.owns(row.vm_id):
                    self.recorder.ended(row)
                continue
            if self.owns(row):
                start = (
                    time.monotonic() + phase(row.disk_id) * self.interval if first else self._soon()
                )
                self._schedule(row.disk_id, start)
        if self.membership.version != self._members_version:
            self._members_version = self.membership.version
            for t in self.targets.values():
                if self.owns(t) and t.disk_id not in self._due:
                    start = (
                        time.monotonic() + phase(t.disk_id) * self.interval
                        if first
                        else self._soon()
                    )
                    self._schedule(t.disk_id, start)
        OWNED.set(sum(1 for d in self._due if d in self.targets))
        self.synced.set()

    # --- loops ---------------------------------------------------------------------------

    async def run(self) -> None:
        workers = [
            asyncio.create_task(self._worker(), name=f"scrape-{i}")
            for i in range(self.settings.concurrency)
        ]
        loops = [
            asyncio.create_task(self._syncing(), name="progress-sync"),
            asyncio.create_task(self._flushing(), name="progress-flush"),
        ]
        try:
            await self._dispatch()
        finally:
            for task in workers + loops:
                task.cancel()
            for task in workers + loops:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(Exception):
                await self.recorder.flush()

    async def _syncing(self) -> None:
        every = min(1.0, self.interval / 2)
        while True:
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cannot read the pods to scrape (%s); retry in %.1f s", exc, every)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.membership.changed.wait(), every)
            self.membership.changed.clear()

    async def _flushing(self) -> None:
        last_prune = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.flush_seconds)
            await self.recorder.flush()
            if time.monotonic() - last_prune > PRUNE_EVERY:
                last_prune = time.monotonic()
                try:
                    await self.recorder.prune([d for d in self._due if d in self.targets])
                    expired = await self.recorder.expire()
                    if expired:
                        log.info("forgot %d history points older than the retention", expired)
                except Exception as exc:
                    log.warning("history pruning failed (%s); next try in 10 min", exc)

    async def _dispatch(self) -> None:
        """Hand due pods to the workers, forever."""
        while True:
            now = time.monotonic()
            while self._heap and self._heap[0][0] <= now:
                at, disk_id = heapq.heappop(self._heap)
                if self._due.get(disk_id) != at:
                    continue  # rescheduled or dropped since
                t = self.targets.get(disk_id)
                if t is None or not self.owns(t):
                    del self._due[disk_id]
                    self.recorder.forget(disk_id)
                    continue
                self._queue.put_nowait(disk_id)
                nxt = at + self.interval
                self._schedule(disk_id, nxt if nxt > now else now + self.interval)
            self._wake.clear()
            wait = self._heap[0][0] - time.monotonic() if self._heap else 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.005, min(wait, 1.0)))

    async def _worker(self) -> None:
        guard = self.settings.timeout_seconds + 1
        while True:
            disk_id = await self._queue.get()
            t = self.targets.get(disk_id)
            if t is None or t.state != RUNNING:
                continue
            rev = t.rev
            try:
                async with asyncio.timeout(guard):
                    page = await self.fetcher.fetch(t)
                # The populator renders its counters when it answers: that is the sample's time.
                at = time.time()
                sample = parse(page, t.owner_uid)
            except (ScrapeError, ClusterUnavailable, TimeoutError) as exc:
                SCRAPES.labels("failed").inc()
                self._complain(t, exc)
                continue
            except Exception as exc:  # a bug must not kill the worker
                SCRAPES.labels("failed").inc()
                log.exception("scraping %s failed unexpectedly", t.disk_id)
                self._complain(t, exc)
                continue
            SCRAPES.labels("ok").inc()
            current = self.targets.get(disk_id)
            if current is not None and current.rev == rev and current.state == RUNNING:
                self.recorder.record(current, sample, at)
                self._complaints.pop(disk_id, None)

    def _complain(self, t: Target, exc: BaseException) -> None:
        """Log a failing pod at most once a minute (2,000 dead pods must not flood logs)."""
        now = time.monotonic()
        last, count = self._complaints.get(t.disk_id, (0.0, 0))
        if now - last < COMPLAIN_EVERY:
            self._complaints[t.disk_id] = (last, count + 1)
            return
        self._complaints[t.disk_id] = (now, 0)
        log.warning(
            "cannot scrape populator pod %s/%s of disk %s: %s%s; trying again every %.0f s",
            t.namespace,
            t.pod,
            t.disk_id,
            str(exc) or type(exc).__name__,
            f" ({count} more failures since the last report)" if count else "",
            self.interval,
        )
