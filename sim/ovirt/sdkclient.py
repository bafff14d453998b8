"""Driving the simulated engine with the real ovirtsdk4, as tests and benchmarks do.

Not used by the engine itself: these helpers are what an oVirt client (Hoist's inventory,
the imageio client in a benchmark) would do, in one place instead of in every caller.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ovirtsdk4 as sdk
import ovirtsdk4.types as types

from sim.ovirt.engine import Engine


def connect(engine: Engine, user: str = "admin@internal", password: str | None = None) -> Any:
    """An ``ovirtsdk4.Connection`` that trusts the engine's CA."""
    return sdk.Connection(
        url=engine.api_url,
        username=user,
        password=password if password is not None else engine.inv.users.get(user, ""),
        ca_file=str(engine.cert.ca_file),
    )


@contextmanager
def download_transfer(conn: Any, disk_id: str) -> Iterator[tuple[Any, list[str]]]:
    """Start a download transfer and wait for ``transferring``; yields the transfer and the
    phases seen so far, and finalizes (waiting for ``finished_success``) on exit."""
    transfers = conn.system_service().image_transfers_service()
    t = transfers.add(
        types.ImageTransfer(
            disk=types.Disk(id=disk_id),
            direction=types.ImageTransferDirection.DOWNLOAD,
            format=types.DiskFormat.RAW,
        )
    )
    service = transfers.image_transfer_service(t.id)
    phases = [t.phase.value]
    while t.phase == types.ImageTransferPhase.INITIALIZING:
        time.sleep(0.05)
        t = service.get()
    phases.append(t.phase.value)
    yield t, phases
    service.finalize()
    while (phase := service.get().phase) != types.ImageTransferPhase.FINISHED_SUCCESS:
        if phase in (types.ImageTransferPhase.FINISHED_FAILURE,):
            raise RuntimeError(f"transfer {t.id} failed to finalize: {phase}")
        time.sleep(0.05)
    phases.append(types.ImageTransferPhase.FINISHED_SUCCESS.value)
