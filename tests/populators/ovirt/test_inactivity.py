"""The ticket's inactivity timeout: the engine pauses a transfer nobody reads from, and the
populator's keep-alive read counts as activity."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import ovirtsdk4.types as types

from services.populators.common.args import Credentials
from services.populators.common.metrics import Progress
from services.populators.common.tls import TlsPolicy
from services.populators.common.volume import VolumeWriter
from services.populators.ovirt.copy import Copier
from services.populators.ovirt.source import ImageioSource
from sim.ovirt.engine import Engine
from sim.ovirt.sdkclient import connect, download_transfer
from tests.sim.ovirt.fixtures import new_disk


def idle_transfer(engine: Engine, disk_id: str) -> str:
    conn = connect(engine)
    try:
        transfers = conn.system_service().image_transfers_service()
        t = transfers.add(
            types.ImageTransfer(
                disk=types.Disk(id=disk_id),
                direction=types.ImageTransferDirection.DOWNLOAD,
                inactivity_timeout=1,
            )
        )
        service = transfers.image_transfer_service(t.id)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            phase = str(service.get().phase.value)
            if phase == "paused_system":
                break
            time.sleep(0.1)
        service.cancel()
        return phase
    finally:
        conn.close()


async def test_engine_pauses_an_idle_transfer(engine: Engine) -> None:
    disk = new_disk(engine)
    assert await asyncio.to_thread(idle_transfer, engine, disk.id) == "paused_system"


def keepalive(
    engine: Engine, disk_id: str, tmp: Path, loop: asyncio.AbstractEventLoop
) -> tuple[int, int, float]:
    """Idle for 2 s, then one keep-alive read; the ticket's idle time before and after."""

    def ticket_idle(ticket: str) -> int:
        info = asyncio.run_coroutine_threadsafe(engine.imageio.ticket_info(ticket), loop).result()
        assert info is not None
        return int(info["idle_time"])

    conn = connect(engine)
    try:
        with download_transfer(conn, disk_id) as (transfer, _):
            policy = TlsPolicy(Credentials("u", "p", engine.cert.ca_pem, None, False))
            source = ImageioSource(transfer.transfer_url, policy)
            with VolumeWriter.open(tmp, 1 << 20) as volume:
                copier = Copier(source, volume, Progress("ovirt_progress", "x"), 1)
                time.sleep(2.2)
                idle = copier.idle_seconds
                ticket = transfer.transfer_url.rsplit("/", 1)[1]
                before = ticket_idle(ticket)
                copier.keepalive()
                after = ticket_idle(ticket)
            return before, after, idle
    finally:
        conn.close()


async def test_keepalive_read_resets_the_ticket_idle_time(engine: Engine, tmp_path: Path) -> None:
    disk = new_disk(engine)
    loop = asyncio.get_running_loop()
    before, after, idle = await asyncio.to_thread(keepalive, engine, disk.id, tmp_path, loop)
    assert before >= 2
    assert after == 0
    assert idle >= 2
