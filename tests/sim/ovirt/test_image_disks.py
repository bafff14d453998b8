"""Disks that hold a user's image file (``image: PATH``): converted into the storage domain
in the disk's format, downloaded byte for byte through the real ovirtsdk4 and imageio,
backed up incrementally while the guest writes, and every mistake a precise error."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import ovirtsdk4.types as types
import pytest
import yaml

from sim.ovirt import scenario
from sim.ovirt.engine import Engine
from sim.ovirt.sdkclient import connect, download_transfer
from tests.sim.imagefiles import MiB, broken_qcow2, guest_bytes, make, sha256
from tests.sim.ovirt.backup_helpers import (
    backup_extents,
    blocks,
    finalize_backup,
    start_backup,
    written,
)
from tools import vmcheck
from tools.verifying import compare_disk, image_format


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A qcow2 image named like a raw one (the name must not matter) and a sparse raw one."""
    d = tmp_path_factory.mktemp("images")
    make(d / "os.img", "qcow2", 3 * MiB + (512 << 10), [(0x5A, 0, MiB), (0xA5, 2 * MiB, 64 << 10)])
    make(d / "data.raw", "raw", 4 * MiB, [(0x3C, MiB, MiB)])
    return d


@pytest.fixture(scope="module")
async def engine(images: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Engine]:
    path = images / "scenario.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "vms": [
                    {
                        "name": "from-images",
                        "disks": [
                            {"name": "os", "image": "os.img", "format": "raw"},
                            {"name": "data", "image": str(images / "data.raw"), "size": "6MiB",
                             "format": "cow", "backup": "incremental"},
                        ],
                    }
                ]
            }
        )
    )  # fmt: skip
    inv, faults = scenario.load(path)  # os.img: relative to the scenario file
    async with Engine(inv, faults, tmp_path_factory.mktemp("engine")) as e:
        yield e


def _download(engine: Engine, disk_id: str) -> tuple[types.Disk, bytes]:
    conn = connect(engine)
    try:
        disk = conn.system_service().disks_service().disk_service(disk_id).get()
        ctx = ssl.create_default_context(cafile=str(engine.cert.ca_file))
        with download_transfer(conn, disk_id) as (transfer, _), httpx.Client(verify=ctx) as http:
            data = http.get(transfer.transfer_url, timeout=30).content
        return disk, data
    finally:
        conn.close()


async def test_image_disks_download_byte_for_byte(engine: Engine, images: Path) -> None:
    before = {p.name: sha256(p) for p in (images / "os.img", images / "data.raw")}
    os_disk, data_disk = engine.inv.disk_by_name("os"), engine.inv.disk_by_name("data")

    got, content = await asyncio.to_thread(_download, engine, os_disk.id)
    assert got.format == types.DiskFormat.RAW  # the disk's format, not the image's
    assert got.provisioned_size == 3 * MiB + (512 << 10)  # the image's virtual size
    assert got.actual_size == MiB + (64 << 10)  # what the image holds, not a share
    assert content == await asyncio.to_thread(guest_bytes, images / "os.img")

    got, content = await asyncio.to_thread(_download, engine, data_disk.id)
    assert got.format == types.DiskFormat.COW
    assert got.provisioned_size == 6 * MiB  # grown past the image's 4 MiB
    # qemu-img create allocates a raw file's first 4 KiB (zeros): allocated all the same
    assert got.actual_size == MiB + 4096
    assert content == await asyncio.to_thread(guest_bytes, images / "data.raw", 6 * MiB)

    stored = await engine.image_path(data_disk.id)
    assert await asyncio.to_thread(image_format, stored) == "qcow2"
    assert {p.name: sha256(p) for p in (images / "os.img", images / "data.raw")} == before


async def test_the_demo_check_compares_against_the_stored_image(
    engine: Engine, images: Path, tmp_path: Path
) -> None:
    """What ``tools/demoverify.py`` does for an oVirt disk: the engine's stored file, in the
    disk's format, against a target holding the image's bytes (and one that does not)."""
    vm = next(v for v in engine.inv.vms.values() if v.name == "from-images")
    expected = vmcheck.from_ovirt(engine.inv, vm, {}, "auto")
    assert [d.format for d in expected.disks] == ["raw", "qcow2"]
    for disk, image in zip(expected.disks, ("os.img", "data.raw"), strict=True):
        target = tmp_path / f"{disk.name}.raw"
        target.write_bytes(await asyncio.to_thread(guest_bytes, images / image, disk.size))
        source = await engine.image_path(disk.disk_id)
        same = await asyncio.to_thread(compare_disk, source, disk.format, target, disk.size)
        assert same.match, (disk.name, same)
        target.write_bytes(bytes(disk.size))
        differ = await asyncio.to_thread(compare_disk, source, disk.format, target, disk.size)
        assert not differ.match


async def test_an_image_disk_is_backed_up_incrementally_while_the_guest_writes(
    engine: Engine,
) -> None:
    vm = next(v for v in engine.inv.vms.values() if v.name == "from-images")
    disk = engine.inv.disk_by_name("data")

    def run(conn: Any, from_cp: str | None) -> tuple[str, list[dict[str, Any]]]:
        backup = start_backup(conn, vm.id, [disk.id], from_cp)
        assert backup.phase == types.BackupPhase.READY, backup.phase
        status, extents = backup_extents(conn, engine, disk.id, backup.id)
        assert status == (200 if from_cp else 404)
        assert finalize_backup(conn, vm.id, backup.id).phase == types.BackupPhase.SUCCEEDED
        return str(backup.to_checkpoint_id), extents

    def backup(from_cp: str | None) -> tuple[str, list[dict[str, Any]]]:
        conn = connect(engine)
        try:
            return run(conn, from_cp)
        finally:
            conn.close()

    checkpoint, _ = await asyncio.to_thread(backup, None)
    wrote = await engine.write_guest(disk.id, 256 << 10, zero=False)
    assert wrote
    _, extents = await asyncio.to_thread(backup, checkpoint)
    assert blocks(extents, dirty=True) == written(wrote)


def _inventory(tmp_path: Path, disk: dict[str, Any], floating: bool = False) -> None:
    doc: dict[str, Any] = (
        {"disks": [disk]}
        if floating
        else {"vms": [{"name": "vm", "disks": [{"name": "first"}, disk]}]}
    )
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    scenario.load(path)


@pytest.mark.parametrize(
    ("disk", "message"),
    [
        ({"image": "nope.qcow2"}, r"vms\[0\]\.disks\[1\]\.image: .*/nope\.qcow2: no such file"),
        ({"image": "."}, r"vms\[0\]\.disks\[1\]\.image: .*: not a file"),
        ({"image": "broken.qcow2"},
         r"disks\[1\]\.image: .*broken\.qcow2: not a disk image qemu-img can read "
         r"\(.*Unsupported qcow2 version 99\)"),
        ({"image": "disk.vmdk"}, r"disk\.vmdk: a vmdk image; expected raw or qcow2"),
        ({"image": "small.qcow2", "size": "1MiB"},
         r"vms\[0\]\.disks\[1\]: size 1 MiB \(1048576 bytes\) is smaller than the image's "
         r"virtual size 2 MiB \(2097152 bytes\) of .*small\.qcow2"),
        ({"image": "small.qcow2", "allocated": 0.5},
         r"vms\[0\]\.disks\[1\]: allocated does not apply to a disk made from an image"),
        ({"image": "small.qcow2", "layout": "scattered", "extent": "1MiB"},
         r"layout, extent do not apply to a disk made from an image .*: remove them"),
    ],
)  # fmt: skip
def test_image_mistakes(tmp_path: Path, disk: dict[str, Any], message: str) -> None:
    make(tmp_path / "small.qcow2", "qcow2", 2 * MiB, [])
    make(tmp_path / "disk.vmdk", "vmdk", MiB, [])
    broken_qcow2(tmp_path / "small.qcow2", tmp_path / "broken.qcow2")
    with pytest.raises(ValueError, match=message):
        _inventory(tmp_path, disk)


def test_a_floating_disk_names_its_own_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^disks\[0\]\.image: .*/gone\.raw: no such file"):
        _inventory(tmp_path, {"image": "gone.raw"}, floating=True)
