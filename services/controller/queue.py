"""The work queue of user claims to reconcile: each key once, by one worker at a time.

The semantics of client-go's rate-limited work queue, which make a level-triggered
controller safe with several workers: a key added while queued is not queued twice; a key
added while a worker handles it is handled again afterwards (never by two workers at
once); ``add_after`` keeps only the earliest pending wake-up of a key; failures back off
per key (``failed``) until ``forget`` resets them.
"""

from __future__ import annotations

import asyncio
import contextlib

Key = tuple[str, str]
"""(namespace, name) of a user claim."""

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 60.0


class ShutDown(Exception):
    """The queue is closed: the worker should return."""


class WorkQueue:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[Key | None] = asyncio.Queue()
        self._dirty: set[Key] = set()
        self._processing: set[Key] = set()
        self._timers: dict[Key, tuple[float, asyncio.TimerHandle]] = {}
        self._failures: dict[Key, int] = {}
        self._closed = False

    def __len__(self) -> int:
        return len(self._dirty)

    @property
    def busy(self) -> int:
        return len(self._processing)

    def add(self, key: Key) -> None:
        if self._closed or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        if self._closed:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending[0] <= when:
                return
            pending[1].cancel()
        self._timers[key] = (when, loop.call_at(when, self._fire, key))

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def failed(self, key: Key) -> float:
        """Count a failure of ``key``; the delay before it is tried again."""
        count = self._failures.get(key, 0)
        self._failures[key] = count + 1
        return float(min(BACKOFF_FIRST * (2**count), BACKOFF_MAX))

    def forget(self, key: Key) -> None:
        self._failures.pop(key, None)

    async def get(self) -> Key:
        key = await self._queue.get()
        if key is None or self._closed:
            self._queue.put_nowait(None)  # wake the next worker too
            raise ShutDown
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: Key) -> None:
        self._processing.discard(key)
        if key in self._dirty and not self._closed:
            self._queue.put_nowait(key)

    def close(self) -> None:
        """Stop handing out keys; workers return once their current key is done."""
        self._closed = True
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)
