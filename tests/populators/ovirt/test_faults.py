"""Each simulated fault: the populator recovers, or fails with one precise line and leaves
the transfer finalized or cancelled (never holding the disk locked)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from sim.ovirt.engine import Engine
from sim.ovirt.scenario import Fault
from tests.populators.ovirt.conftest import (
    assert_same_image,
    creds_env,
    run_populator,
    start_populator,
)
from tests.sim.ovirt.fixtures import MiB, new_disk, transfer_phase


async def test_locked_disk_is_retried_until_unlocked(engine: Engine, tmp_path: Path) -> None:
    disk = new_disk(engine)
    engine.add_fault(Fault("disk_locked", disk=disk.id, seconds=1.5))
    run = await run_populator(engine, disk, tmp_path)
    assert run.returncode == 0, run.stderr
    assert "is locked, trying again" in run.stderr
    await assert_same_image(engine, disk, tmp_path / "disk.img")
    assert await transfer_phase(engine, disk) == "finished_success"


async def test_paused_system_fails_and_cancels(engine: Engine, tmp_path: Path) -> None:
    disk = new_disk(engine)
    engine.add_fault(Fault("paused_system", disk=disk.id))
    run = await run_populator(engine, disk, tmp_path)
    assert run.returncode == 1
    assert run.last_line.startswith("ovirt-populator: failed: ")
    assert "paused_system" in run.last_line
    assert await transfer_phase(engine, disk) == "finished_cleanup"
    assert engine.inv.disks[disk.id].status == "ok"


async def test_ticket_expiry_mid_transfer_fails_with_403(engine: Engine, tmp_path: Path) -> None:
    # 64 MiB of data: at least eight 8 MiB range requests, so those after the first four
    # start once the ticket expired, whatever the random layout (32 MiB could be exactly
    # four requests, all authorized before the expiry).
    disk = new_disk(engine, size="128MiB", allocated=0.5)
    engine.add_fault(Fault("ticket_expiry", disk=disk.id, after_bytes=4 * MiB))
    engine.add_fault(Fault("bandwidth", disk=disk.id, bytes_per_second=16 * MiB))
    run = await run_populator(engine, disk, tmp_path)
    assert run.returncode == 1
    assert "403" in run.last_line
    assert "expired or was cancelled" in run.last_line
    assert await transfer_phase(engine, disk) == "finished_cleanup"


async def test_bandwidth_limit_still_copies_exactly(engine: Engine, tmp_path: Path) -> None:
    disk = new_disk(engine)
    engine.add_fault(Fault("bandwidth", disk=disk.id, bytes_per_second=32 * MiB))
    run = await run_populator(engine, disk, tmp_path)
    assert run.returncode == 0, run.stderr
    await assert_same_image(engine, disk, tmp_path / "disk.img")


async def test_connection_reset_is_resumed(engine: Engine, tmp_path: Path) -> None:
    disk = new_disk(engine, format="cow")
    engine.add_fault(Fault("connection_reset", disk=disk.id, after_bytes=3 * MiB, count=2))
    run = await run_populator(engine, disk, tmp_path)
    assert run.returncode == 0, run.stderr
    assert "retrying bytes" in run.stderr
    assert " 0 retries" not in run.stderr
    await assert_same_image(engine, disk, tmp_path / "disk.img")
    assert await transfer_phase(engine, disk) == "finished_success"


async def test_resets_on_options_and_extents_are_retried_in_place(
    engine: Engine, tmp_path: Path
) -> None:
    # The first three OPTIONS and the first three extents requests lose their connection
    # (a RST, before any answer or halfway through it), on top of resets during the data
    # reads: each is retried in place on the same URL, and the copy completes exactly.
    disk = new_disk(engine, format="cow")
    engine.add_fault(Fault("control_reset", disk=disk.id, count=3))
    engine.add_fault(Fault("connection_reset", disk=disk.id, after_bytes=3 * MiB, count=2))
    run = await run_populator(engine, disk, tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("retrying OPTIONS ") == 3, run.stderr
    assert run.stderr.count("retrying GET ") == 3, run.stderr
    assert "/extents?context=zero after:" in run.stderr
    assert "retrying bytes" in run.stderr
    assert "not usable" not in run.stderr  # OPTIONS did not give up on transfer_url
    await assert_same_image(engine, disk, tmp_path / "disk.img")
    assert await transfer_phase(engine, disk) == "finished_success"


async def test_5xx_burst_is_retried(engine: Engine, tmp_path: Path) -> None:
    disk = new_disk(engine)
    engine.add_fault(Fault("http_5xx", disk=disk.id, count=5, status=503))
    run = await run_populator(engine, disk, tmp_path)
    assert run.returncode == 0, run.stderr
    assert "HTTP 503" in run.stderr
    await assert_same_image(engine, disk, tmp_path / "disk.img")


async def test_unreachable_host_falls_back_to_proxy_url(engine: Engine, tmp_path: Path) -> None:
    disk = new_disk(engine)
    engine.add_fault(Fault("host_unreachable", disk=disk.id))
    run = await run_populator(engine, disk, tmp_path)
    assert run.returncode == 0, run.stderr
    assert engine.proxy is not None
    assert f"via {engine.proxy.url}" in run.stderr
    await assert_same_image(engine, disk, tmp_path / "disk.img")


async def test_wrong_credentials_fail_before_any_transfer(engine: Engine, tmp_path: Path) -> None:
    disk = new_disk(engine)
    run = await run_populator(engine, disk, tmp_path, creds_env(engine, password="wrong"))
    assert run.returncode == 1
    assert "engine refused the credentials of user admin@internal" in run.last_line
    assert await transfer_phase(engine, disk, within=0.1) == "none"


async def test_missing_credentials_are_a_usage_error(engine: Engine, tmp_path: Path) -> None:
    disk = new_disk(engine)
    run = await run_populator(engine, disk, tmp_path, {"cacert": engine.cert.ca_pem})
    assert run.returncode == 2
    assert "no credentials" in run.last_line


async def test_pinned_fingerprint_accepted(engine: Engine, tmp_path: Path) -> None:
    disk = new_disk(engine)
    env = creds_env(engine, cacert="", fingerprint=engine.cert.fingerprint)
    run = await run_populator(engine, disk, tmp_path, env)
    assert run.returncode == 0, run.stderr
    await assert_same_image(engine, disk, tmp_path / "disk.img")


async def test_wrong_fingerprint_refused(engine: Engine, tmp_path: Path) -> None:
    disk = new_disk(engine)
    wrong = ":".join(["AB"] * 32)
    run = await run_populator(
        engine, disk, tmp_path, creds_env(engine, cacert="", fingerprint=wrong)
    )
    assert run.returncode == 1
    assert f"not the pinned {wrong}" in run.last_line
    assert await transfer_phase(engine, disk, within=0.1) == "none"


async def test_insecure_skip_verify_only_when_told(engine: Engine, tmp_path: Path) -> None:
    disk = new_disk(engine)
    refused = await run_populator(engine, disk, tmp_path, creds_env(engine, cacert=""))
    assert refused.returncode == 1
    assert "failed TLS verification" in refused.last_line
    run = await run_populator(
        engine, disk, tmp_path, creds_env(engine, cacert="", insecureSkipVerify="true")
    )
    assert run.returncode == 0, run.stderr


async def test_illegal_and_lun_disks_fail_at_once(engine: Engine, tmp_path: Path) -> None:
    illegal = new_disk(engine, status="illegal")
    run = await run_populator(engine, illegal, tmp_path)
    assert run.returncode == 1
    assert "is illegal" in run.last_line
    lun = new_disk(engine, storage_type="lun")
    run = await run_populator(engine, lun, tmp_path)
    assert run.returncode == 1
    assert "storage type lun" in run.last_line


async def test_sigterm_cancels_the_transfer(engine: Engine, tmp_path: Path) -> None:
    disk = new_disk(engine, size="32MiB", allocated=0.5)
    engine.add_fault(Fault("bandwidth", disk=disk.id, bytes_per_second=2 * MiB))
    proc = await start_populator(engine, disk, tmp_path)
    assert proc.stderr is not None
    while True:  # wait until it copies
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        assert line, "populator exited early"
        if "readers" in line:
            break
    await asyncio.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    rest = (await asyncio.wait_for(proc.stderr.read(), 60)).decode()
    assert await proc.wait() == 1
    assert rest.strip().splitlines()[-1] == (
        "ovirt-populator: failed: terminated by SIGTERM; the copy is incomplete"
    )
    assert await transfer_phase(engine, disk) == "finished_cleanup"
    assert engine.inv.disks[disk.id].status == "ok"
