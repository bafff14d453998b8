"""Child processes of the simulator (ovirt-imageio, qemu-nbd) that die with it.

Why: a test or benchmark killed with SIGKILL must not leave daemons holding ports, sockets
and image files. Each child gets PR_SET_PDEATHSIG; start children from the event loop's
thread (the signal fires when the forking *thread* exits).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import signal
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)  # resolved now: no dlopen in a forked child
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int


def _die_with_parent() -> None:
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


async def spawn(argv: list[str], log: Path) -> asyncio.subprocess.Process:
    """Start ``argv`` with stdout and stderr appended to ``log``."""
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            preexec_fn=_die_with_parent,
            start_new_session=True,
        )


async def stop(process: asyncio.subprocess.Process, grace: float = 10) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def log_tail(log: Path, lines: int = 30) -> str:
    """The end of a child's log, for error messages that say what the child said."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(log unreadable: {exc})"
