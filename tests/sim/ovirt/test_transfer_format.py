"""An image transfer's ``format``, as the engine serves it (TransferDiskImageCommand):
``raw`` is the guest's view through qemu-nbd (the NBD backend); ``cow``, or no format, is
the volume's file as stored (the FILE backend), the file's size for a qcow2 volume. The
engine has no validation against ``cow`` on a raw volume: the raw file is served as is.
Also: the byte-counting data-path faults count image data only."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import ovirtsdk4.types as types
import pytest

from sim.ovirt.engine import Engine
from sim.ovirt.entities import Disk
from sim.ovirt.images import write_raw
from sim.ovirt.scenario import Fault
from sim.ovirt.sdkclient import connect
from tests.sim.ovirt.fixtures import new_disk, transfer_phase


def tls(engine: Engine) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(engine.cert.ca_file))


def download(engine: Engine, disk_id: str, fmt: types.DiskFormat | None) -> tuple[str, bytes]:
    """Transfer the disk with ``fmt`` (ovirtsdk4), read it all from imageio, finalize;
    the format the engine reports and the bytes."""
    conn = connect(engine)
    try:
        transfers = conn.system_service().image_transfers_service()
        t = transfers.add(
            types.ImageTransfer(
                disk=types.Disk(id=disk_id),
                direction=types.ImageTransferDirection.DOWNLOAD,
                format=fmt,
            )
        )
        service = transfers.image_transfer_service(t.id)
        deadline = time.monotonic() + 10
        while t.phase == types.ImageTransferPhase.INITIALIZING and time.monotonic() < deadline:
            time.sleep(0.05)
            t = service.get()
        assert t.phase == types.ImageTransferPhase.TRANSFERRING
        with httpx.Client(verify=tls(engine)) as http:
            data = http.get(t.transfer_url).content
        service.finalize()
        return str(t.format.value), data
    finally:
        conn.close()


def guest_view(disk: Disk, tmp: Path) -> bytes:
    """What the guest sees: the disk's pattern as a raw file."""
    path = tmp / f"{disk.id}.guest"
    write_raw(path, disk.image)
    return path.read_bytes()


async def fetch(engine: Engine, disk: Disk, fmt: types.DiskFormat | None) -> tuple[str, bytes]:
    found = await asyncio.to_thread(download, engine, disk.id, fmt)
    assert await transfer_phase(engine, disk) == "finished_success"
    return found


async def test_raw_on_a_qcow2_disk_is_the_guest_view(engine: Engine, tmp_path: Path) -> None:
    disk = new_disk(engine, format="cow")
    fmt, data = await fetch(engine, disk, types.DiskFormat.RAW)
    assert fmt == "raw"
    assert len(data) == disk.provisioned_size
    assert data == guest_view(disk, tmp_path)


@pytest.mark.parametrize("fmt", [types.DiskFormat.COW, None])
async def test_cow_or_no_format_on_a_qcow2_disk_is_the_file_as_stored(
    engine: Engine, fmt: types.DiskFormat | None
) -> None:
    disk = new_disk(engine, format="cow")
    reported, data = await fetch(engine, disk, fmt)
    stored = (await engine.image_path(disk.id)).read_bytes()
    assert reported == "cow"  # without a format, the disk's own
    assert data[:4] == b"QFI\xfb"  # qcow2's magic: the image, not the guest's bytes
    assert data == stored
    assert len(data) < disk.provisioned_size  # the file's size, not the virtual size


@pytest.mark.parametrize("fmt", [types.DiskFormat.COW, types.DiskFormat.RAW, None])
async def test_every_format_on_a_raw_disk_gives_its_bytes(
    engine: Engine, tmp_path: Path, fmt: types.DiskFormat | None
) -> None:
    disk = new_disk(engine)
    reported, data = await fetch(engine, disk, fmt)
    assert reported == (fmt.value if fmt is not None else "raw")
    assert data == guest_view(disk, tmp_path)


async def test_an_unknown_format_is_a_400_fault(engine: Engine) -> None:
    disk = new_disk(engine)
    body = (
        f'<image_transfer><disk id="{disk.id}"/><direction>download</direction>'
        "<format>vmdk</format></image_transfer>"
    )
    async with httpx.AsyncClient(
        verify=tls(engine), auth=("admin@internal", engine.inv.users["admin@internal"])
    ) as http:
        r = await http.post(
            f"{engine.api_url}/imagetransfers",
            content=body,
            headers={"Content-Type": "application/xml"},
        )
    assert r.status_code == 400
    assert "<fault>" in r.text
    assert disk.status == "ok"


def control_then_data(url: str, context: ssl.SSLContext) -> list[Any]:
    """OPTIONS, extents, then two reads of 64 KiB, each on a fresh connection: what each
    answered (a status, or the exception)."""
    results: list[Any] = []
    requests = [
        ("OPTIONS", url, {}),
        ("GET", f"{url}/extents", {}),
        ("GET", url, {"Range": "bytes=0-65535"}),
        ("GET", url, {"Range": "bytes=0-65535"}),
    ]
    for method, target, headers in requests:
        with httpx.Client(verify=context) as http:
            try:
                r = http.request(method, target, headers=headers)
                results.append(r.status_code)
            except httpx.TransportError as exc:
                results.append(type(exc).__name__)
    return results


async def test_connection_reset_counts_image_data_only(engine: Engine) -> None:
    """``after_bytes: 1``: the OPTIONS and extents answers (JSON, not image data) pass; the
    first byte of image data resets the connection; the next read succeeds."""
    disk = new_disk(engine)
    engine.add_fault(Fault("connection_reset", disk=disk.id, after_bytes=1, count=1))
    conn = await asyncio.to_thread(connect, engine)
    try:
        transfers = conn.system_service().image_transfers_service()
        t = await asyncio.to_thread(
            transfers.add,
            types.ImageTransfer(
                disk=types.Disk(id=disk.id),
                direction=types.ImageTransferDirection.DOWNLOAD,
                format=types.DiskFormat.RAW,
            ),
        )
        service = transfers.image_transfer_service(t.id)
        while t.phase == types.ImageTransferPhase.INITIALIZING:
            await asyncio.sleep(0.05)
            t = await asyncio.to_thread(service.get)
        results = await asyncio.to_thread(control_then_data, t.transfer_url, tls(engine))
        await asyncio.to_thread(service.finalize)
    finally:
        await asyncio.to_thread(conn.close)
    assert results[:2] == [200, 200]
    assert isinstance(results[2], str)  # the reset: a transport error, no answer
    assert results[3] == 206
