"""The guest conversion contract (``shared.conversion``) and ConvertGuest's place in the
pipeline: what the step and the conversion pod agree on, read back the way it was written."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from shared import conversion as c
from shared.payloads import ProviderType, Step
from shared.pipeline import STEPS, WARM_STEPS, next_step, steps_of


def test_convert_guest_runs_right_before_the_vm_is_created_only_when_asked() -> None:
    for source in STEPS:
        assert Step.CONVERT_GUEST not in steps_of(source)
        steps = steps_of(source, convert=True)
        at = steps.index(Step.CONVERT_GUEST)
        assert steps[at - 1] is Step.DISK_TRANSFER
        assert steps[at + 1] is Step.VIRTUAL_MACHINE_CREATION
        assert next_step(source, Step.DISK_TRANSFER, convert=True) is Step.CONVERT_GUEST
        assert next_step(source, Step.DISK_TRANSFER) is Step.VIRTUAL_MACHINE_CREATION
        with pytest.raises(ValueError, match="not a step"):
            next_step(source, Step.CONVERT_GUEST)  # a VM without it never reaches it
    warm = steps_of(ProviderType.OVIRT, warm=True, convert=True)
    assert warm[warm.index(Step.CONVERT_GUEST) - 1] is Step.FINAL_COPY
    assert set(steps_of(ProviderType.OVIRT, warm=True)) == set(WARM_STEPS[ProviderType.OVIRT])
    # Declaration order is pipeline order (the planner sorts steps by it).
    order = list(Step)
    assert order.index(Step.FINAL_COPY) < order.index(Step.CONVERT_GUEST)
    assert order.index(Step.CONVERT_GUEST) < order.index(Step.VIRTUAL_MACHINE_CREATION)


def test_args_read_back_as_written_and_name_forklifts_paths() -> None:
    args = c.ConvertArgs(
        name="web",
        disks=(c.VolumeMode.FILESYSTEM, c.VolumeMode.BLOCK, c.VolumeMode.FILESYSTEM),
        memory_mib=2048,
        vcpus=4,
        firmware=c.Firmware.UEFI,
        overlay=False,
        accel=c.Accel.TCG,
    )
    assert c.ConvertArgs.parse(args.argv()) == args
    assert args.images() == [
        "/mnt/disks/disk0/disk.img",
        "/dev/block1",
        "/mnt/disks/disk2/disk.img",
    ]
    with pytest.raises(ValueError, match="at least one disk"):
        c.ConvertArgs(name="x", disks=())


def test_domain_xml_lists_the_disks_in_order_for_libvirtxml() -> None:
    args = c.ConvertArgs(name="a&b", disks=(c.VolumeMode.FILESYSTEM, c.VolumeMode.BLOCK))
    xml = c.domain_xml(args, [("/s/overlay0.qcow2", "qcow2"), ("/dev/block1", "raw")])
    root = ET.fromstring(xml)  # noqa: S314 (our own XML)
    assert root.findtext("name") == "a&b"  # escaped, read back
    assert root.findtext("memory") == str(1024 * 1024)
    disks = root.findall("devices/disk")
    assert [d.get("type") for d in disks] == ["file", "block"]
    assert disks[0].find("source").get("file") == "/s/overlay0.qcow2"  # type: ignore[union-attr]
    assert disks[1].find("source").get("dev") == "/dev/block1"  # type: ignore[union-attr]
    assert [d.find("target").get("dev") for d in disks] == ["vda", "vdb"]  # type: ignore[union-attr]
    assert root.find("os").get("firmware") is None  # type: ignore[union-attr]
    uefi = c.ConvertArgs(name="u", disks=(c.VolumeMode.BLOCK,), firmware=c.Firmware.UEFI)
    assert (
        ET.fromstring(c.domain_xml(uefi, [("/dev/block0", "raw")]))  # noqa: S314
        .find("os")
        .get(  # type: ignore[union-attr]
            "firmware"
        )
        == "efi"
    )
    with pytest.raises(ValueError, match="source"):
        c.domain_xml(args, [("/x", "raw")])


def test_libguestfs_runs_emulated_where_kvm_cannot_run_its_kernel(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/kvm").touch()
    assert c.libguestfs_env(c.Accel.AUTO, root=tmp_path) == {"LIBGUESTFS_BACKEND": "direct"}
    (tmp_path / "sys/module/kvm_pvm").mkdir(parents=True)
    tcg = c.libguestfs_env(c.Accel.AUTO, root=tmp_path)
    assert tcg["LIBGUESTFS_BACKEND_SETTINGS"] == "force_tcg"
    assert "LIBGUESTFS_BACKEND_SETTINGS" not in c.libguestfs_env(c.Accel.KVM, root=tmp_path)
    bare = tmp_path / "bare"
    bare.mkdir()
    assert "LIBGUESTFS_BACKEND_SETTINGS" in c.libguestfs_env(c.Accel.AUTO, root=bare)


def test_result_survives_the_termination_log() -> None:
    done = c.ConversionResult(True, message="m" * 5000, os={"distro": "debian"}, seconds=1.5)
    text = done.to_json()
    assert len(text.encode()) < 4096  # the kubelet keeps 4 KiB of a termination message
    back = c.ConversionResult.of(text)
    assert back is not None
    assert back.os == {"distro": "debian"}
    assert back.succeeded
    assert c.ConversionResult.of("") is None
    assert c.ConversionResult.of("Killed\nsome log") is None  # FallbackToLogsOnError
    assert c.ConversionResult.of('{"x": 1}') is None


def test_labels_select_the_vms_objects_and_tell_the_pod_apart() -> None:
    labels = c.pod_labels("p", "m", "v")
    assert labels["hoist.io/vm"] == "v"
    assert labels[c.CONVERSION] == c.CONVERSION_VALUE
    assert "hoist.io/disk" not in labels  # the progress service's populator watch skips it
