"""The boot check's half that needs no guest: the QEMU command line a KubeVirt
VirtualMachine becomes, and how a guest's report is held against its source VM. (The real
boot of a migrated guest: tests/e2e/test_guests.py.)"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tools import bootcheck, guestimage, vmcheck
from tools import demoscenario as dsc

MIB = 1 << 20

VM: dict[str, Any] = {
    "spec": {
        "template": {
            "spec": {
                "domain": {
                    "cpu": {"sockets": 2, "cores": 2, "threads": 1},
                    "memory": {"guest": "1536Mi"},
                    "firmware": {
                        "bootloader": {"efi": {"secureBoot": True}},
                        "uuid": "5b1e4b53-08c5-4d2c-9d3f-1c2b3a4d5e6f",
                    },
                    "features": {"acpi": {}, "smm": {"enabled": True}},
                    "devices": {
                        "disks": [
                            {
                                "name": "disk-1",
                                "disk": {"bus": "sata"},
                                "bootOrder": 1,
                                "serial": "root-id",
                            },
                            {"name": "disk-0", "disk": {"bus": "scsi"}, "serial": "data-id"},
                            {"name": "disk-2", "disk": {"bus": "virtio"}},
                        ],
                        "interfaces": [
                            {
                                "name": "nic-0",
                                "model": "e1000e",
                                "macAddress": "56:6f:00:00:00:01",
                                "masquerade": {},
                            },
                            {"name": "nic-1", "model": "virtio", "bridge": {}},
                        ],
                    },
                },
                "volumes": [
                    {"name": "disk-0", "persistentVolumeClaim": {"claimName": "c-data"}},
                    {"name": "disk-1", "persistentVolumeClaim": {"claimName": "c-root"}},
                    {"name": "disk-2", "persistentVolumeClaim": {"claimName": "c-more"}},
                ],
            }
        }
    }
}
FILES = {c: Path(f"/vol/{c}") for c in ("c-data", "c-root", "c-more")}


def _args(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_the_command_line_is_the_virtual_machine(tmp_path: Path) -> None:
    if not (bootcheck.OVMF / "OVMF_CODE_4M.secboot.fd").exists():
        pytest.skip("ovmf is not installed (tools/system-deps.sh)")
    argv = bootcheck.qemu_argv(VM, FILES, tmp_path, accel_name="tcg")
    assert _args(argv, "-machine") == ["q35,smm=on,accel=tcg"]
    assert "driver=cfi.pflash01,property=secure,value=on" in _args(argv, "-global")
    pflash = _args(argv, "-drive")[:2]
    assert "OVMF_CODE_4M.secboot.fd" in pflash[0]
    assert "readonly=on" in pflash[0]
    assert pflash[1].endswith(f"file={tmp_path / 'efivars.fd'}")  # a private copy
    assert (tmp_path / "efivars.fd").read_bytes() == (
        bootcheck.OVMF / "OVMF_VARS_4M.ms.fd"
    ).read_bytes()
    assert _args(argv, "-smp") == ["4,sockets=2,cores=2,threads=1"]
    assert _args(argv, "-m") == ["1536M"]
    assert _args(argv, "-uuid") == ["5b1e4b53-08c5-4d2c-9d3f-1c2b3a4d5e6f"]
    drives = _args(argv, "-drive")[2:]
    # Each disk on its volume, in the VM's order, never written (snapshot=on).
    assert [d.split(",")[0] for d in drives] == [
        f"file={FILES[c]}" for c in ("c-root", "c-data", "c-more")
    ]
    assert all("snapshot=on" in d and "format=raw" in d for d in drives)
    devices = _args(argv, "-device")
    assert "ide-hd,bus=ide.0,drive=drive0,serial=root-id,bootindex=1" in devices
    assert "virtio-scsi-pci,id=scsi0" in devices
    assert "scsi-hd,bus=scsi0.0,drive=drive1,serial=data-id" in devices
    assert "virtio-blk-pci,drive=drive2" in devices
    assert "e1000e,netdev=net0,mac=56:6f:00:00:00:01" in devices
    assert "virtio-net-pci,netdev=net1" in devices


def test_bios_and_plain_uefi(tmp_path: Path) -> None:
    bios = copy.deepcopy(VM)
    bios["spec"]["template"]["spec"]["domain"]["firmware"]["bootloader"] = {"bios": {}}
    argv = bootcheck.qemu_argv(bios, FILES, tmp_path, accel_name="kvm")
    assert _args(argv, "-machine") == ["q35,accel=kvm"]
    assert _args(argv, "-cpu") == ["host"]
    assert not any("pflash" in d for d in _args(argv, "-drive"))
    if (bootcheck.OVMF / "OVMF_CODE_4M.fd").exists():
        uefi = copy.deepcopy(VM)
        uefi["spec"]["template"]["spec"]["domain"]["firmware"]["bootloader"] = {
            "efi": {"secureBoot": False}
        }
        argv = bootcheck.qemu_argv(uefi, FILES, tmp_path, accel_name="tcg")
        assert _args(argv, "-machine") == ["q35,accel=tcg"]
        assert "OVMF_CODE_4M.fd" in _args(argv, "-drive")[0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"volumes": []}, "no volume file for claim"),
        ({"bus": "usb"}, "bus 'usb' is not supported"),
        ({"model": "tulip"}, "model 'tulip' unknown"),
    ],
)
def test_what_cannot_be_booted_is_said(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    vm = copy.deepcopy(VM)
    spec = vm["spec"]["template"]["spec"]
    spec["domain"]["firmware"]["bootloader"] = {"bios": {}}
    if "volumes" in change:
        spec["volumes"] = change["volumes"]
    if "bus" in change:
        spec["domain"]["devices"]["disks"][2]["disk"]["bus"] = change["bus"]
    if "model" in change:
        spec["domain"]["devices"]["interfaces"][1]["model"] = change["model"]
    with pytest.raises(bootcheck.BootCheckError, match=message):
        bootcheck.qemu_argv(vm, FILES, tmp_path, accel_name="tcg")


def _expected() -> vmcheck.ExpectedVm:
    return vmcheck.ExpectedVm(
        source="ovirt",
        vm_id="v",
        name="v",
        sockets=2,
        cores=2,
        threads=1,
        memory=1536 * MIB,
        firmware="uefi",
        secure_boot=True,
        running=None,
        disks=[
            vmcheck.ExpectedDisk("r", "root", 0, "raw", True, "0123456789abcdefghijklmn", "sata"),
            vmcheck.ExpectedDisk(
                "d", "data", 0, "raw", False, "data-id-long-enough-for-scsi", "scsi"
            ),
        ],
        nics=[
            vmcheck.ExpectedNic("56:6f:00:00:00:01", "prod", "pod"),
            vmcheck.ExpectedNic("56:6f:00:00:00:02", "backup", "ignored"),
        ],
    )


REPORT: dict[str, Any] = {
    "cpus": 4,
    "sockets": 2,
    "cores": 2,
    "threads": 1,
    "ram": 1536 * MIB - 40 * MIB,
    "firmware": "uefi",
    "secureBoot": True,
    "macs": ["56:6f:00:00:00:01"],
    "disks": [
        {"name": "sda", "serial": "0123456789abcdefghij"},  # ATA: 20 bytes
        {"name": "sdb", "serial": "data-id-long-enough-for-scsi"},
    ],
    "fstab": [{"spec": "UUID=x", "target": "/", "mounted": True}],
    "multiUser": "active",
}


def test_a_matching_report_passes_and_each_difference_is_named() -> None:
    assert bootcheck.compare(_expected(), REPORT) == []
    wrong = copy.deepcopy(REPORT)
    wrong |= {
        "cores": 1,
        "cpus": 2,
        "ram": 2048 * MIB,
        "secureBoot": False,
        "multiUser": "inactive",
    }
    wrong["macs"] = ["56:6f:00:00:00:09"]
    wrong["disks"] = wrong["disks"][:1]
    wrong["fstab"].append({"spec": "UUID=y", "target": "/data", "mounted": False})
    problems = "\n".join(bootcheck.compare(_expected(), wrong))
    for part in (
        "multi-user.target is 'inactive'",
        "cores: the guest sees 1, the source had 2",
        "cpus: the guest sees 2, the source had 4",
        "RAM: the guest sees 2048 MiB, the source had 1536",
        "Secure Boot: off in the guest, on on the source",
        "NIC MACs",
        "disks: the guest sees 1, the source had 2",
        "disk data: no disk with serial",
        "/data: in /etc/fstab (UUID=y) but not mounted",
    ):
        assert part in problems, problems


def test_the_report_is_found_among_the_console_noise() -> None:
    console = (
        "[ OK ] Reached target multi-user\r\nHOIST-GUEST-REPORT " + json.dumps(REPORT) + "\r\n"
    )
    assert bootcheck.parse_report("noise\n" + console) == REPORT
    assert bootcheck.parse_report("HOIST-GUEST-REPORT {broken") is None


def test_accel_follows_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOIST_BOOTCHECK_ACCEL", "tcg")
    assert bootcheck.accel() == "tcg"
    monkeypatch.setenv("HOIST_BOOTCHECK_ACCEL", "kvm")
    assert bootcheck.accel() == "kvm"


def test_guest_references_in_a_scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="expected guest:NAME"):
        dsc.resolve_image("guest:windows-root", tmp_path)
    with pytest.raises(ValueError, match="expected guest:NAME"):
        dsc.resolve_image("guest:data.vmdk", tmp_path)
    built = tmp_path / "built"
    monkeypatch.setattr(guestimage, "ensure", lambda log=None: guestimage.GuestSet(built))
    assert dsc.resolve_image("guest:data", tmp_path) == built / "data.qcow2"
    assert dsc.resolve_image("guest:uefi-root.raw", tmp_path) == built / "uefi-root.raw"


def test_the_guests_scenario_is_valid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Checked without building the guests: any small image stands in for them."""
    from tests.sim.imagefiles import make

    for name in guestimage.GUESTS:
        for fmt in guestimage.FORMATS:
            make(tmp_path / f"{name}.{fmt}", fmt, 4 * MIB, [(0x5A, 0, MIB)])
    monkeypatch.setattr(guestimage, "ensure", lambda log=None: guestimage.GuestSet(tmp_path))
    scenario = dsc.load(Path(dsc.DEFAULT_PATH).parent / "guests.yaml")
    assert all(p.boot_check for p in scenario.plans)
    assert {p.source for p in scenario.plans} == {"ovirt", "openstack"}
    converting = dsc.load(Path(dsc.DEFAULT_PATH).parent / "convert.yaml")
    assert all(p.convert_guest and p.boot_check for p in converting.plans)


def test_the_recipe_key_follows_the_guest_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = guestimage.recipe_key()
    assert len(key) == 16
    assert key == guestimage.recipe_key()
    files = tmp_path / "guest"
    shutil.copytree(guestimage.GUEST_FILES, files)
    monkeypatch.setattr(guestimage, "GUEST_FILES", files)
    assert guestimage.recipe_key() == key  # the same files: the same guests
    report = files / "hoist-report.sh"
    report.write_text(report.read_text() + "# changed\n")
    assert guestimage.recipe_key() != key  # a changed guest file builds a new set
