"""How a populator ends: exit 0 when every byte is written, else one line saying why.

The populator pod's termination message is what users see in the PVC's events and in
Hoist's disk status, so every failure is one line naming what failed and what happens next.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("populator")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class PopulatorFailure(Exception):
    """A failure we understood; its message is the one line the user reads."""


def run_main(name: str, main: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """Run ``main``; SIGTERM (the pod being deleted) cancels it, so it can clean up (the
    oVirt populator cancels its transfer) before we exit non-zero."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format=f"%(asctime)s {name} %(message)s"
    )
    terminated = False

    async def guarded() -> None:
        nonlocal terminated
        task = asyncio.current_task()
        assert task is not None

        def on_term() -> None:
            nonlocal terminated
            terminated = True
            task.cancel()

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_term)
        await main()

    try:
        asyncio.run(guarded())
    except asyncio.CancelledError:
        why = "terminated by SIGTERM" if terminated else "cancelled"
        print(f"{name}: failed: {why}; the copy is incomplete", file=sys.stderr, flush=True)
        return EXIT_FAILED
    except PopulatorFailure as exc:
        print(f"{name}: failed: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    except ValueError as exc:  # UsageError and bad argument values
        print(f"{name}: failed: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{name}: failed: interrupted", file=sys.stderr, flush=True)
        return EXIT_FAILED
    except Exception as exc:
        log.exception("unexpected error")
        print(f"{name}: failed: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{name}: done", file=sys.stderr, flush=True)
    return EXIT_OK
