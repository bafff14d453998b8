"""The server-sent-events stream of progress: the NATS events, fanned out to HTTP clients.

Any replica serves any stream: each subscribes (core NATS) to every ``progress.disk`` and
``progress.vm`` event, whoever published it, and copies each to the queues of its
clients whose filter matches. A client too slow to keep up loses the oldest frames, not
the connection: progress supersedes itself, the next frame tells the truth again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from shared import envelope as env

HEARTBEAT_SECONDS = 15.0
QUEUE = 256


@dataclass(eq=False)
class _Client:
    plan_id: str | None
    vm_id: str | None
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(QUEUE))


class Hub:
    def __init__(self) -> None:
        self._clients: set[_Client] = set()

    @property
    def clients(self) -> int:
        return len(self._clients)

    async def on_event(self, event: env.Envelope[Any]) -> None:
        data = event.data.model_dump(mode="json", by_alias=True)
        kind = "disk" if "disk_id" in data else "vm"
        frame = f"event: {kind}\ndata: {json.dumps(_camel(data))}\n\n"
        for c in self._clients:
            if c.plan_id and data.get("plan_id") != c.plan_id:
                continue
            if c.vm_id and data.get("vm_id") != c.vm_id:
                continue
            if c.queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    c.queue.get_nowait()
            c.queue.put_nowait(frame)

    async def frames(
        self,
        plan_id: str | None,
        vm_id: str | None,
        disconnected: Callable[[], Awaitable[bool]],
    ) -> AsyncIterator[str]:
        c = _Client(plan_id, vm_id)
        self._clients.add(c)
        try:
            yield "retry: 2000\n: progress events follow\n\n"
            while not await disconnected():
                try:
                    yield await asyncio.wait_for(c.queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
        finally:
            self._clients.discard(c)


def _camel(data: dict[str, Any]) -> dict[str, Any]:
    def camel(key: str) -> str:
        head, *rest = key.split("_")
        return head + "".join(p.capitalize() for p in rest)

    return {camel(k): v for k, v in data.items()}
