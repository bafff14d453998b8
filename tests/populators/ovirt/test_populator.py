"""The oVirt populator against the simulated engine and a real imageio: byte-exact copies
from raw and qcow2 sources to Filesystem and Block volumes, metrics, and sparseness."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
from pathlib import Path

import pytest

from sim.ovirt.engine import Engine
from sim.ovirt.scenario import Fault
from tests.populators.ovirt.conftest import assert_same_image, run_populator, start_populator
from tests.sim.ovirt.fixtures import MiB, new_disk, transfer_phase


@pytest.mark.parametrize(
    ("fmt", "layout"), [("raw", "large"), ("cow", "scattered"), ("raw", "scattered")]
)
async def test_copy_to_filesystem_is_exact_and_sparse(
    engine: Engine, tmp_path: Path, fmt: str, layout: str
) -> None:
    disk = new_disk(
        engine, format=fmt, layout=layout, extent="1MiB" if layout == "scattered" else "4MiB"
    )
    run = await run_populator(engine, disk, tmp_path)
    assert run.returncode == 0, run.stderr
    image = tmp_path / "disk.img"
    await assert_same_image(engine, disk, image)
    assert image.stat().st_size == disk.provisioned_size
    # holes stayed holes: allocated bytes about the data share, not the virtual size
    assert image.stat().st_blocks * 512 <= disk.provisioned_size * 0.5
    assert await transfer_phase(engine, disk) == "finished_success"
    assert engine.inv.disks[disk.id].status == "ok"


@pytest.mark.parametrize("fmt", ["raw", "cow"])
async def test_copy_to_block_device_zeroes_what_the_source_does_not_hold(
    engine: Engine, loop_device: Path, fmt: str
) -> None:
    disk = new_disk(engine, format=fmt, layout="scattered", extent="1MiB")
    run = await run_populator(engine, disk, loop_device)
    assert run.returncode == 0, run.stderr
    await assert_same_image(engine, disk, loop_device)
    assert await transfer_phase(engine, disk) == "finished_success"


async def test_block_device_too_small_fails_and_cancels(engine: Engine, tmp_path: Path) -> None:
    disk = new_disk(engine, size="48MiB")
    device = tmp_path / "small-device"
    device.write_bytes(b"\0" * (8 * MiB))
    run = await run_populator(engine, disk, device)
    assert run.returncode == 1
    assert "the PVC is too small" in run.last_line
    assert await transfer_phase(engine, disk) == "finished_cleanup"
    assert engine.inv.disks[disk.id].status == "ok"


async def test_metrics_over_tls_while_copying(engine: Engine, tmp_path: Path) -> None:
    disk = new_disk(engine, size="32MiB", allocated=0.5)
    engine.add_fault(Fault("bandwidth", disk=disk.id, bytes_per_second=4 * MiB))
    proc = await start_populator(engine, disk, tmp_path)
    assert proc.stderr is not None
    port = None
    while port is None:
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        assert line, "populator exited before serving metrics"
        if match := re.search(r"metrics on port (\d+)", line):
            port = int(match.group(1))
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # self-signed, as Forklift
    seen: list[int] = []
    kept: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while proc.returncode is None and len(seen) < 50:
        try:
            if len(seen) % 2:
                # A one-shot client, as a shell's curl: the server closes after answering.
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
                writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                body = (await reader.read()).decode()
                writer.close()
            else:
                # A scraper keeping its connection (HTTP/1.1's default): framed by length.
                if kept is None:
                    kept = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
                reader, writer = kept
                writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                assert "Connection: keep-alive" in head
                length = int(re.search(r"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
                body = (await reader.readexactly(length)).decode()
        except (OSError, asyncio.IncompleteReadError):
            break
        match = re.search(r'^ovirt_progress\{ownerUID="uid-1234"\} (\d+)$', body, re.M)
        assert match, body
        assert "hoist_populator_bytes_total" in body
        seen.append(int(match.group(1)))
        await asyncio.sleep(0.2)
    if kept is not None:
        kept[1].close()
    await asyncio.wait_for(proc.wait(), 60)
    assert proc.returncode == 0
    assert len(seen) > 2  # both kinds of client were answered
    assert seen == sorted(seen)
    assert max(seen[:-1], default=0) < 100  # 100 only once done (a last scrape may see it)
    assert any(p > 0 for p in seen)


async def test_success_with_a_scraper_connected_exits_without_traceback(
    engine: Engine, tmp_path: Path
) -> None:
    # A scraper's keep-alive connection still open when the copy ends: stopping the metrics
    # server ends it quietly (its task used to be cancelled at exit, logging a traceback).
    disk = new_disk(engine, size="16MiB", allocated=0.5)
    engine.add_fault(Fault("bandwidth", disk=disk.id, bytes_per_second=8 * MiB))
    proc = await start_populator(engine, disk, tmp_path)
    assert proc.stderr is not None
    lines: list[str] = []
    port = None
    while port is None:
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        assert line, "populator exited before serving metrics"
        lines.append(line)
        if match := re.search(r"metrics on port (\d+)", line):
            port = int(match.group(1))
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode()
    assert "Connection: keep-alive" in head
    rest = (await asyncio.wait_for(proc.stderr.read(), 60)).decode()
    stderr = "".join(lines) + rest
    await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode == 0, stderr
    assert "copied" in stderr
    assert "Traceback" not in stderr, stderr
    assert "Exception in callback" not in stderr, stderr
    # The server closed the kept connection on its way out.
    with contextlib.suppress(OSError):
        await asyncio.wait_for(reader.read(), 5)
    assert reader.at_eof()
    writer.close()


async def test_rerun_overwrites_a_previous_partial_copy(engine: Engine, tmp_path: Path) -> None:
    disk = new_disk(engine)
    (tmp_path / "disk.img").write_bytes(os.urandom(4 * MiB))  # junk from an earlier pod
    run = await run_populator(engine, disk, tmp_path)
    assert run.returncode == 0, run.stderr
    await assert_same_image(engine, disk, tmp_path / "disk.img")
