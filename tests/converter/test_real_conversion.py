"""The conversion pod's program on real guest disks: this machine's Debian
``virt-v2v-in-place`` (2.2.0) converts copies of the two-disk BIOS guest
``tools/guestimage.py`` builds (root + a data disk its fstab mounts at /data by UUID), laid
out as a conversion pod sees its Filesystem claims (``/mnt/disks/disk<N>/disk.img``).

A whole conversion takes a quarter of an hour here (917 s measured: libguestfs's appliance
runs emulated, TCG, on this PVM host, and making the guest's initramfs again is nearly all
of it), far too long for ``make test``; it runs with ``HOIST_TEST_SLOW_CONVERSION=1``. The
default suite has the real run that fails fast instead: the appliance boots, virt-v2v
reads the domain XML and the overlays, finds no OS on a data disk, and the volume is left
byte for byte as it was (about a minute).
The guest cache is never written: each test converts copies.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from services.converter.converting import PROGRAM, run
from shared.conversion import ConvertArgs, VolumeMode
from tools import bootcheck, guestimage, vmcheck

pytestmark = pytest.mark.skipif(
    shutil.which(PROGRAM) is None,
    reason=f"{PROGRAM} is not installed (Debian: apt-get install virt-v2v nbdkit "
    "libguestfs-tools; tools/system-deps.sh does)",
)


@pytest.fixture(scope="module")
def guests() -> guestimage.GuestSet:
    """The real guests (``make test`` builds them first; built here if missing)."""
    return guestimage.ensure()


def lay_out(root: Path, *images: Path) -> list[Path]:
    """Sparse copies of ``images`` where a pod's Filesystem claims are."""
    out = []
    for i, image in enumerate(images):
        target = root / f"mnt/disks/disk{i}/disk.img"
        target.parent.mkdir(parents=True)
        shutil.copyfile(image, target)  # sparse enough: only written blocks are real
        out.append(target)
    return out


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


@pytest.mark.skipif(
    os.environ.get("HOIST_TEST_SLOW_CONVERSION") != "1",
    reason="a whole real conversion took 917 s here (TCG; the guest's initramfs is made "
    "again, emulated); HOIST_TEST_SLOW_CONVERSION=1 runs it",
)
async def test_two_disk_bios_guest_is_converted_in_place_and_boots(
    tmp_path: Path, guests: guestimage.GuestSet
) -> None:
    root, data = lay_out(tmp_path, guests.path("bios-root", "raw"), guests.path("data", "raw"))
    before = digest(root)
    args = ConvertArgs(name="bios-guest", disks=(VolumeMode.FILESYSTEM, VolumeMode.FILESYSTEM))
    log = io.StringIO()
    result = await asyncio.to_thread(
        run, args, scratch=tmp_path / "scratch", root=tmp_path, out=log
    )
    text = log.getvalue()
    (tmp_path / "conversion.log").write_text(text)  # kept with the test's tmp dir
    assert result.succeeded, f"{result.reason}: {result.message}\n{text[-4000:]}"
    assert result.os["distro"] == "debian"
    assert result.os["major_version"] == "12"
    # Inspection saw the data disk through the guest's fstab (/data by UUID).
    assert "/data" in text
    # Written back from the overlay: the root changed (a new initramfs), no overlay left.
    assert digest(root) != before
    assert not list((tmp_path / "scratch").glob("overlay*.qcow2"))
    assert data.exists()
    print(f"converted in {result.seconds} s")
    # The converted guest still boots, its data disk mounted by UUID.
    booted = await bootcheck.boot(
        "converted", bios_vm(), {"root": root, "data": data}, bios_expected(), tmp_path / "boot"
    )
    assert booted.passed, booted.json()


def bios_vm() -> dict[str, Any]:
    """A KubeVirt VM of the two disks (root on virtio, data on virtio-scsi)."""
    disks = [
        {"name": "root", "disk": {"bus": "virtio"}, "bootOrder": 1, "serial": "root-disk"},
        {"name": "data", "disk": {"bus": "scsi"}, "serial": "data-disk"},
    ]
    return {
        "spec": {
            "template": {
                "spec": {
                    "domain": {
                        "cpu": {"sockets": 1, "cores": 2, "threads": 1},
                        "memory": {"guest": "1Gi"},
                        "firmware": {"bootloader": {"bios": {}}},
                        "devices": {"disks": disks, "interfaces": []},
                    },
                    "volumes": [
                        {"name": n, "persistentVolumeClaim": {"claimName": n}}
                        for n in ("root", "data")
                    ],
                }
            }
        }
    }


def bios_expected() -> vmcheck.ExpectedVm:
    return vmcheck.ExpectedVm(
        source="ovirt",
        vm_id="converted",
        name="converted",
        sockets=1,
        cores=2,
        threads=1,
        memory=1 << 30,
        firmware="bios",
        secure_boot=False,
        running=None,
        disks=[
            vmcheck.ExpectedDisk("r", "root", 0, "raw", True, "root-disk", "virtio"),
            vmcheck.ExpectedDisk("d", "data", 0, "raw", False, "data-disk", "scsi"),
        ],
    )


def test_a_failed_conversion_leaves_the_volumes_as_copied(
    tmp_path: Path, guests: guestimage.GuestSet
) -> None:
    (data,) = lay_out(tmp_path, guests.path("data", "raw"))  # no operating system on it
    before = digest(data)
    args = ConvertArgs(name="no-os", disks=(VolumeMode.FILESYSTEM,))
    log = io.StringIO()
    result = run(args, scratch=tmp_path / "scratch", root=tmp_path, out=log)
    assert not result.succeeded
    assert result.reason == "ConversionFailed", result
    assert "untouched" in result.message
    assert digest(data) == before
