"""The thread pool every blocking SDK call (ovirtsdk4, openstacksdk, keystoneauth) runs in,
so the event loop never waits on a provider."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from shared.sources.problems import ConnectionProblem, Reason

T = TypeVar("T")


class Blocking:
    """The thread pool every blocking SDK call runs in, shared by all providers.

    Each provider gets at most ``per_provider`` threads of it at once, so a provider whose
    calls hang holds a few threads, never all of them; a call running past ``timeout``
    raises ``ConnectionProblem(TIMEOUT)`` (its thread finishes in the background).
    """

    def __init__(self, workers: int, per_provider: int, timeout: float, name: str = "sdk") -> None:
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self.per_provider = per_provider
        self.timeout = timeout
        self._gates: dict[str, asyncio.Semaphore] = {}

    def for_provider(self, provider_id: str) -> Calls:
        gate = self._gates.setdefault(provider_id, asyncio.Semaphore(self.per_provider))
        return Calls(self, gate)

    def forget(self, provider_id: str) -> None:
        self._gates.pop(provider_id, None)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class Calls:
    """``await calls(fn, *args)``: run one blocking call of one provider."""

    pool: Blocking
    gate: asyncio.Semaphore

    async def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async with self.gate:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self.pool.executor, lambda: fn(*args, **kwargs))
            try:
                return await asyncio.wait_for(future, self.pool.timeout)
            except TimeoutError:
                raise ConnectionProblem(
                    Reason.TIMEOUT,
                    f"the provider did not answer a call within {self.pool.timeout:.0f} s",
                ) from None
