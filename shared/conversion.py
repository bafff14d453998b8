"""The guest conversion contract: what the orchestrator's ConvertGuest step and the
conversion pod (``services/converter``) agree on, declared once.

ConvertGuest runs one pod per VM with *all* the VM's claims attached, in the VM's disk
order, at the paths a Forklift conversion pod uses: a Filesystem claim mounted at
``/mnt/disks/disk<N>`` (the image is ``disk.img`` in it, as the populators write it), a
Block claim attached as ``/dev/block<N>``. All at once because inspection mounts every
filesystem the guest's ``/etc/fstab`` names (``/data`` on the second disk): a pod given
the root disk alone fails or converts a guest it only half sees.

The pod is told the VM (name, memory, vCPUs, firmware, disk modes in order) as arguments
(``ConvertArgs.argv``, parsed back by ``ConvertArgs.parse``); it writes the libvirt domain
XML itself (``domain_xml``) with the paths it really sees, runs ``virt-v2v-in-place -i
libvirtxml``, and ends writing a ``ConversionResult`` (JSON) to its termination log, which
the step reads back. Labels are the VM's object labels plus ``hoist.io/conversion``.

Stdlib only at import, like the populator contract: the conversion pod imports it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from xml.etree import ElementTree as ET

from shared.populator.keys import COMPONENT, object_labels
from shared.populator.kinds import PREFIX

__all__ = [
    "BLOCK_PREFIX",
    "CONTAINER",
    "CONVERSION",
    "CONVERSION_COMPONENT",
    "CONVERSION_VALUE",
    "DISK_FILE",
    "FS_ROOT",
    "PERMANENT_REASONS",
    "SCRATCH",
    "TERMINATION_LOG",
    "Accel",
    "ConversionResult",
    "ConvertArgs",
    "Firmware",
    "Reason",
    "VolumeMode",
    "domain_xml",
    "image_path",
    "libguestfs_env",
    "pod_labels",
    "volume_path",
]

CONVERSION = f"{PREFIX}conversion"
"""Label of a conversion pod (value ``CONVERSION_VALUE``): a VM's pods are told apart by it
(the consumer pod has ``hoist.io/consumer``, populator pods ``hoist.io/disk``)."""
CONVERSION_VALUE = "guest"
CONVERSION_COMPONENT = "guest-conversion"
"""``app.kubernetes.io/component`` of a conversion pod."""
CONTAINER = "convert"
"""The pod's one container (the step reads its log and termination message by this name)."""

FS_ROOT = "/mnt/disks"
"""Filesystem claims are mounted at ``<FS_ROOT>/disk<N>`` (Forklift's layout)."""
DISK_FILE = "disk.img"
"""The image in a Filesystem claim (what the populators write)."""
BLOCK_PREFIX = "/dev/block"
"""Block claims are attached at ``/dev/block<N>``."""
SCRATCH = "/var/tmp/hoist-conversion"  # noqa: S108 (the pod's own emptyDir)
"""An emptyDir: the domain XML, the qcow2 overlays and libguestfs's appliance cache."""
TERMINATION_LOG = "/dev/termination-log"


class VolumeMode(StrEnum):
    FILESYSTEM = "Filesystem"
    BLOCK = "Block"


class Firmware(StrEnum):
    BIOS = "bios"
    UEFI = "uefi"


class Accel(StrEnum):
    """How libguestfs's appliance runs: ``kvm``, ``tcg`` (emulated, slow but everywhere),
    or ``auto``: TCG where KVM cannot run a stock kernel (``/sys/module/kvm_pvm``: a PVM
    host's /dev/kvm fails with "emulation failure") or where there is no /dev/kvm."""

    AUTO = "auto"
    KVM = "kvm"
    TCG = "tcg"


class Reason(StrEnum):
    """Why a conversion failed (``ConversionResult.reason``, then the VM's error reason)."""

    CONVERSION_FAILED = "ConversionFailed"  # virt-v2v-in-place exited non-zero
    CONVERTER_MISSING = "ConverterMissing"  # no virt-v2v-in-place in the image
    VOLUME_MISSING = "ConversionVolumeMissing"  # a disk path the args name is not there
    COMMIT_FAILED = "OverlayCommitFailed"  # converted, but writing back to a volume failed
    POD_FAILED = "ConversionPodFailed"  # the pod ended without a result (killed, OOM)
    TIMEOUT = "ConversionTimeout"  # the step's limit passed (pod pending or running)


PERMANENT_REASONS: frozenset[str] = frozenset(
    {Reason.CONVERSION_FAILED, Reason.CONVERTER_MISSING, Reason.VOLUME_MISSING}
)
"""Reasons a re-run of the plan meets again (the guest, the image or the layout); the
others may pass (a node killed the pod, a volume write failed)."""


def volume_path(index: int, mode: VolumeMode | str) -> str:
    """Where the ``index``-th claim (0-based, the VM's disk order) is in the pod: the
    mount directory of a Filesystem claim, the device of a Block claim."""
    if VolumeMode(mode) is VolumeMode.BLOCK:
        return f"{BLOCK_PREFIX}{index}"
    return f"{FS_ROOT}/disk{index}"


def image_path(index: int, mode: VolumeMode | str) -> str:
    """The disk image itself: ``disk.img`` in a Filesystem claim, the Block device."""
    base = volume_path(index, mode)
    return base if VolumeMode(mode) is VolumeMode.BLOCK else f"{base}/{DISK_FILE}"


def pod_labels(plan_id: str, migration_id: str, vm_id: str) -> dict[str, str]:
    """The VM's object labels (teardown selects by them) plus the conversion's own."""
    return {
        **object_labels(plan_id, migration_id, vm_id),
        COMPONENT: CONVERSION_COMPONENT,
        CONVERSION: CONVERSION_VALUE,
    }


@dataclass(frozen=True)
class ConvertArgs:
    """The conversion pod's arguments: what it must know of the VM to describe it to
    virt-v2v (the disks' paths follow from their modes and order)."""

    name: str
    disks: tuple[VolumeMode, ...]
    memory_mib: int = 1024
    vcpus: int = 1
    firmware: Firmware = Firmware.BIOS
    overlay: bool = True
    accel: Accel = Accel.AUTO

    def __post_init__(self) -> None:
        if not self.disks:
            raise ValueError("a conversion needs at least one disk")
        if self.memory_mib < 1 or self.vcpus < 1:
            raise ValueError("memory and vCPUs must be positive")

    def argv(self) -> list[str]:
        out = [
            "--name",
            self.name,
            "--memory-mib",
            str(self.memory_mib),
            "--vcpus",
            str(self.vcpus),
            "--firmware",
            self.firmware.value,
            "--accel",
            self.accel.value,
            "--overlay" if self.overlay else "--no-overlay",
        ]
        for mode in self.disks:
            out += ["--disk", mode.value]
        return out

    @staticmethod
    def parser() -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(
            prog="hoist-converter",
            description="Convert a guest in place (virt-v2v-in-place) on the volumes "
            f"attached at {FS_ROOT}/disk<N> or {BLOCK_PREFIX}<N>.",
        )
        p.add_argument("--name", required=True)
        p.add_argument("--memory-mib", type=int, default=1024)
        p.add_argument("--vcpus", type=int, default=1)
        p.add_argument("--firmware", choices=[f.value for f in Firmware], default="bios")
        p.add_argument("--accel", choices=[a.value for a in Accel], default="auto")
        p.add_argument("--overlay", action=argparse.BooleanOptionalAction, default=True)
        p.add_argument(
            "--disk",
            action="append",
            choices=[m.value for m in VolumeMode],
            required=True,
            help="each disk's volume mode, in the VM's disk order",
        )
        return p

    @classmethod
    def parse(cls, argv: Sequence[str]) -> ConvertArgs:
        ns = cls.parser().parse_args(list(argv))
        return cls(
            name=ns.name,
            disks=tuple(VolumeMode(m) for m in ns.disk),
            memory_mib=ns.memory_mib,
            vcpus=ns.vcpus,
            firmware=Firmware(ns.firmware),
            overlay=ns.overlay,
            accel=Accel(ns.accel),
        )

    def images(self) -> list[str]:
        return [image_path(i, m) for i, m in enumerate(self.disks)]


def domain_xml(args: ConvertArgs, sources: Sequence[tuple[str, str]]) -> str:
    """The libvirt domain virt-v2v reads (``-i libvirtxml``): ``sources`` is each disk's
    ``(path, format)`` in the VM's order (the volumes, or the overlays on them). Disks are
    virtio (``vda``, ``vdb``...): the bus the guest will have in KubeVirt."""
    if len(sources) != len(args.disks):
        raise ValueError(f"{len(args.disks)} disk(s) but {len(sources)} source(s)")
    domain = ET.Element("domain", type="kvm")
    ET.SubElement(domain, "name").text = args.name
    ET.SubElement(domain, "memory", unit="KiB").text = str(args.memory_mib * 1024)
    ET.SubElement(domain, "vcpu").text = str(args.vcpus)
    os_ = ET.SubElement(domain, "os")
    if args.firmware is Firmware.UEFI:
        os_.set("firmware", "efi")
    ET.SubElement(os_, "type", arch="x86_64", machine="q35").text = "hvm"
    devices = ET.SubElement(domain, "devices")
    for i, (path, fmt) in enumerate(sources):
        block = path.startswith("/dev/")
        disk = ET.SubElement(devices, "disk", type="block" if block else "file", device="disk")
        ET.SubElement(disk, "driver", name="qemu", type=fmt)
        ET.SubElement(disk, "source", {"dev": path} if block else {"file": path})
        ET.SubElement(disk, "target", dev=f"vd{_letters(i)}", bus="virtio")
    ET.indent(domain)
    return ET.tostring(domain, encoding="unicode") + "\n"


def _letters(index: int) -> str:
    """``a``..``z``, ``aa``..: libvirt's disk names."""
    out = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        out = chr(ord("a") + rest) + out
    return out


def kvm_runs_stock_kernels(root: Path = Path("/")) -> bool:
    """Whether this host's KVM can run an unmodified guest kernel: there is a /dev/kvm, and
    it is not PVM (``kvm_pvm``), which runs only PVM-aware kernels (a stock one stops with
    "KVM internal error ... emulation failure")."""
    return (root / "dev/kvm").exists() and not (root / "sys/module/kvm_pvm").exists()


def libguestfs_env(accel: Accel, *, root: Path = Path("/")) -> dict[str, str]:
    """The environment libguestfs needs for ``accel``: always the direct backend (no
    libvirtd in a pod), and TCG when asked or, for ``auto``, where KVM cannot run the
    appliance's stock kernel (a PVM host) or there is no /dev/kvm."""
    env = {"LIBGUESTFS_BACKEND": "direct"}
    tcg = accel is Accel.TCG or (accel is Accel.AUTO and not kvm_runs_stock_kernels(root))
    if tcg:
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    return env


@dataclass
class ConversionResult:
    """What the pod writes to its termination log (4 KiB at most: short fields only)."""

    succeeded: bool
    reason: str = ""
    message: str = ""
    #: What inspection found (``type``, ``distro``, ``version``, ``product``), when printed.
    os: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    overlay: bool = True

    def to_json(self) -> str:
        data = asdict(self)
        data["message"] = data["message"][:1500]
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def of(cls, text: str | None) -> ConversionResult | None:
        """The result in a termination message; None when there is none (the pod was
        killed before it could write one) or it is not one."""
        try:
            data = json.loads(text or "")
        except ValueError:
            return None
        if not isinstance(data, Mapping) or not isinstance(data.get("succeeded"), bool):
            return None
        os_ = data.get("os")
        return cls(
            succeeded=data["succeeded"],
            reason=str(data.get("reason") or ""),
            message=str(data.get("message") or ""),
            os={str(k): str(v) for k, v in os_.items()} if isinstance(os_, Mapping) else {},
            seconds=float(data.get("seconds") or 0.0),
            overlay=bool(data.get("overlay", True)),
        )
