"""Boot a migrated VM from its target volumes, as KubeVirt would, and ask the guest what it
sees.

``qemu_argv`` turns the KubeVirt VirtualMachine Hoist created into a ``qemu-system-x86_64``
command line, the way virt-launcher's libvirt domain would run it: a q35 machine; SeaBIOS or
OVMF (with Secure Boot enforced and SMM when ``bootloader.efi.secureBoot``, the Microsoft
keys enrolled as KubeVirt's secure-boot firmware has them); the CPU topology and guest
memory of ``domain``; each disk on its bus (virtio-blk, virtio-scsi, SATA on q35's AHCI)
with its serial and boot order; each interface with its model and MAC; the SMBIOS UUID of
``firmware.uuid``. Volumes are opened with ``snapshot=on``: a boot replays journals and
writes logs, and the check must not change the disks it checks.

The guests Hoist's demo builds (``tools/guestimage.py``) print one ``HOIST-GUEST-REPORT``
line on the serial console once they reach multi-user; ``compare`` holds it against the
source VM (``tools.vmcheck.ExpectedVm``): CPUs, RAM, firmware, Secure Boot, the NICs' MACs,
the disks (count and serials) and every ``/etc/fstab`` filesystem mounted.

Acceleration: KVM when this machine's KVM can run a stock kernel, else TCG (software
emulation, several times slower, same result). The machines Hoist is developed on expose
``/dev/kvm`` through PVM (``kvm_pvm``), which runs only PVM-aware guest kernels: a stock
Debian kernel stops with "KVM internal error ... emulation failure" while setting up its FPU
(``xrstor``, then the ``int3`` self-test), so ``auto`` takes TCG there.
``HOIST_BOOTCHECK_ACCEL=kvm|tcg`` overrides.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import conversion
from shared.quantity import size_bytes
from tools import vmcheck

REPORT_PREFIX = "HOIST-GUEST-REPORT "
OVMF = Path("/usr/share/OVMF")
#: firmware -> (code, variable store template). Secure Boot: Microsoft's keys enrolled, as
#: in KubeVirt's secure-boot firmware, so a shim signed by Microsoft is trusted.
FIRMWARE = {
    "uefi": ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
    "uefi-secure-boot": ("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd"),
}
#: KubeVirt interface models -> QEMU devices.
NIC_DEVICES = {
    "virtio": "virtio-net-pci",
    "e1000": "e1000",
    "e1000e": "e1000e",
    "igb": "igb",
    "rtl8139": "rtl8139",
    "ne2k_pci": "ne2k_pci",
    "pcnet": "pcnet",
}
#: Serial numbers a bus lets a guest read: virtio-blk and ATA carry 20 bytes, SCSI more.
SERIAL_BYTES = {"virtio": 20, "sata": 20}
AHCI_PORTS = 6  # q35's built-in AHCI controller: ide.0 .. ide.5
MIB = 1 << 20


class BootCheckError(Exception):
    """The VM cannot be booted here (an unsupported device, a missing volume or firmware)."""


@dataclass
class BootResult:
    """One boot: did the guest report, and does its report match the source?"""

    vm: str
    accel: str = ""
    passed: bool = False
    seconds: float | None = None
    report: dict[str, Any] | None = None
    mismatches: list[str] = field(default_factory=list)
    error: str | None = None
    console_tail: str = ""

    def json(self) -> dict[str, Any]:
        return {
            "result": "passed" if self.passed else "failed",
            "accel": self.accel,
            "seconds": None if self.seconds is None else round(self.seconds, 1),
            "mismatches": self.mismatches,
            "error": self.error,
            "guest": self.report,
            **({} if self.passed else {"consoleTail": self.console_tail}),
        }


def memory_bytes(text: object) -> int:
    try:
        return size_bytes(str(text))
    except ValueError:
        raise BootCheckError(f"memory {text!r}: not a Kubernetes quantity") from None


def accel() -> str:
    """``kvm`` or ``tcg``: see the module's docstring."""
    wanted = os.environ.get("HOIST_BOOTCHECK_ACCEL", "auto")
    if wanted in ("kvm", "tcg"):
        return wanted
    if not conversion.kvm_runs_stock_kernels():
        return "tcg"
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return "tcg"
    os.close(fd)
    return "kvm"


def qemu_argv(
    vm: Mapping[str, Any],
    volumes: Mapping[str, Path],
    workdir: Path,
    *,
    accel_name: str,
) -> list[str]:
    """The command line that boots ``vm`` (a KubeVirt VirtualMachine) from ``volumes``
    (claim name -> the raw file holding it). The console goes to ``workdir/console.log``;
    a UEFI VM's variable store is copied into ``workdir``."""
    spec = vm["spec"]["template"]["spec"]
    domain = spec["domain"]
    argv = ["qemu-system-x86_64", "-nodefaults", "-display", "none", "-no-user-config"]
    secure = False
    bootloader = domain.get("firmware", {}).get("bootloader", {})
    machine = "q35"
    if "efi" in bootloader:
        secure = bool(bootloader["efi"].get("secureBoot", True))  # KubeVirt's default
        code, template = FIRMWARE["uefi-secure-boot" if secure else "uefi"]
        for f in (code, template):
            if not (OVMF / f).exists():
                raise BootCheckError(f"{OVMF / f} is missing: install ovmf (tools/system-deps.sh)")
        vars_copy = workdir / "efivars.fd"
        shutil.copyfile(OVMF / template, vars_copy)
        if secure:
            machine += ",smm=on"
            argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
        argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF / code}"]
        argv += ["-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]
    argv += ["-machine", f"{machine},accel={accel_name}"]
    # TCG's "max" CPU claims to be AMD, and without topoext a Linux guest on AMD counts
    # threads as cores: an Intel vendor makes it read the topology QEMU gives (leaf 0xB).
    argv += ["-cpu", "host" if accel_name == "kvm" else "max,vendor=GenuineIntel"]
    cpu = domain.get("cpu") or {}
    sockets, cores, threads = (int(cpu.get(k) or 1) for k in ("sockets", "cores", "threads"))
    argv += [
        "-smp",
        f"{sockets * cores * threads},sockets={sockets},cores={cores},threads={threads}",
    ]
    memory = (domain.get("memory") or {}).get("guest") or (
        (domain.get("resources") or {}).get("requests") or {}
    ).get("memory")
    argv += ["-m", f"{memory_bytes(memory or '1Gi') // MIB}M"]
    uuid = (domain.get("firmware") or {}).get("uuid")
    if uuid:
        argv += ["-uuid", str(uuid)]
    argv += _disk_args(domain, spec.get("volumes") or [], volumes)
    argv += _nic_args(domain)
    argv += ["-chardev", f"file,id=console,path={workdir / 'console.log'}"]
    argv += ["-serial", "chardev:console"]
    return argv


def _disk_args(
    domain: Mapping[str, Any], volumes: list[Mapping[str, Any]], files: Mapping[str, Path]
) -> list[str]:
    claims = {
        v["name"]: (v.get("persistentVolumeClaim") or v.get("dataVolume") or {}).get(
            "claimName", (v.get("dataVolume") or {}).get("name")
        )
        for v in volumes
    }
    argv: list[str] = []
    scsi = False
    sata = 0
    for i, disk in enumerate((domain.get("devices") or {}).get("disks") or []):
        name = disk["name"]
        claim = claims.get(name)
        if claim is None or claim not in files:
            raise BootCheckError(f"disk {name}: no volume file for claim {claim!r}")
        drive = f"drive{i}"
        argv += [
            "-drive",
            f"file={files[claim]},format=raw,if=none,id={drive},snapshot=on,cache=unsafe",
        ]
        bus = (disk.get("disk") or {}).get("bus", "virtio")
        extra = ""
        if disk.get("serial"):
            extra += f",serial={disk['serial']}"
        if disk.get("bootOrder"):
            extra += f",bootindex={int(disk['bootOrder'])}"
        if bus == "virtio":
            argv += ["-device", f"virtio-blk-pci,drive={drive}{extra}"]
        elif bus == "scsi":
            if not scsi:
                argv += ["-device", "virtio-scsi-pci,id=scsi0"]
                scsi = True
            argv += ["-device", f"scsi-hd,bus=scsi0.0,drive={drive}{extra}"]
        elif bus == "sata":
            if sata >= AHCI_PORTS:
                raise BootCheckError(f"disk {name}: more than {AHCI_PORTS} SATA disks")
            argv += ["-device", f"ide-hd,bus=ide.{sata},drive={drive}{extra}"]
            sata += 1
        else:
            raise BootCheckError(f"disk {name}: bus {bus!r} is not supported by the boot check")
    return argv


def _nic_args(domain: Mapping[str, Any]) -> list[str]:
    argv: list[str] = []
    for i, iface in enumerate((domain.get("devices") or {}).get("interfaces") or []):
        model = iface.get("model", "virtio")
        device = NIC_DEVICES.get(model)
        if device is None:
            raise BootCheckError(f"interface {iface.get('name')}: model {model!r} unknown")
        # A user-mode network that reaches nothing: the guest needs the device, not a route.
        argv += ["-netdev", f"user,id=net{i},restrict=on"]
        mac = f",mac={iface['macAddress']}" if iface.get("macAddress") else ""
        argv += ["-device", f"{device},netdev=net{i}{mac}"]
    return argv


def parse_report(console: str) -> dict[str, Any] | None:
    for line in console.splitlines():
        at = line.find(REPORT_PREFIX)
        if at >= 0:
            with contextlib.suppress(ValueError):
                found = json.loads(line[at + len(REPORT_PREFIX) :].strip())
                if isinstance(found, dict):
                    return found
    return None


def compare(expected: vmcheck.ExpectedVm, report: Mapping[str, Any]) -> list[str]:
    """What the guest saw that differs from its source VM, one readable line each."""
    out: list[str] = []
    if report.get("multiUser") != "active":
        out.append(f"multi-user.target is {report.get('multiUser')!r}, not active")
    for key, want in (
        ("sockets", expected.sockets),
        ("cores", expected.cores),
        ("threads", expected.threads),
        ("cpus", expected.sockets * expected.cores * expected.threads),
    ):
        if report.get(key) != want:
            out.append(f"{key}: the guest sees {report.get(key)}, the source had {want}")
    ram = int(report.get("ram") or 0)
    # The firmware keeps some RAM for itself (below 1 MiB, SMM's TSEG, OVMF's own pages):
    # what the guest is handed is a little less than the VM's memory, never more.
    slack = max(64 * MIB, expected.memory // 32)
    if not expected.memory - slack <= ram <= expected.memory:
        out.append(
            f"RAM: the guest sees {ram / MIB:.0f} MiB, the source had {expected.memory / MIB:.0f}"
        )
    if report.get("firmware") != expected.firmware:
        out.append(
            f"firmware: the guest booted {report.get('firmware')}, "
            f"the source had {expected.firmware}"
        )
    if bool(report.get("secureBoot")) != expected.secure_boot:
        out.append(
            f"Secure Boot: {'on' if report.get('secureBoot') else 'off'} in the guest, "
            f"{'on' if expected.secure_boot else 'off'} on the source"
        )
    want_macs = sorted(n.mac.lower() for n in expected.nics if n.target != "ignored")
    got_macs = sorted(str(m).lower() for m in report.get("macs") or [])
    if got_macs != want_macs:
        out.append(f"NIC MACs: the guest sees {got_macs}, the source had {want_macs}")
    disks = report.get("disks") or []
    if len(disks) != len(expected.disks):
        out.append(f"disks: the guest sees {len(disks)}, the source had {len(expected.disks)}")
    serials = {str(d.get("serial") or "") for d in disks}
    for exp in expected.disks:
        if exp.serial is None:
            continue
        shown = exp.serial[: SERIAL_BYTES.get(exp.bus, len(exp.serial))]
        if shown not in serials:
            out.append(f"disk {exp.name}: no disk with serial {shown!r} in the guest")
    for entry in report.get("fstab") or []:
        if not entry.get("mounted"):
            out.append(
                f"{entry.get('target')}: in /etc/fstab ({entry.get('spec')}) but not mounted"
            )
    return out


async def boot(
    name: str,
    vm: Mapping[str, Any],
    volumes: Mapping[str, Path],
    expected: vmcheck.ExpectedVm,
    workdir: Path,
    *,
    timeout: float | None = None,
) -> BootResult:
    """Boot ``vm``, wait for the guest's report (``timeout``: 180 s with KVM, 900 s under
    TCG), stop the VM, and compare."""
    accel_name = accel()
    result = BootResult(vm=name, accel=accel_name)
    workdir.mkdir(parents=True, exist_ok=True)
    console = workdir / "console.log"
    console.unlink(missing_ok=True)
    try:
        argv = qemu_argv(vm, volumes, workdir, accel_name=accel_name)
    except BootCheckError as exc:
        result.error = str(exc)
        return result
    (workdir / "qemu.argv").write_text(" ".join(argv) + "\n")
    limit = timeout or (180.0 if accel_name == "kvm" else 900.0)
    started = time.monotonic()
    with (workdir / "qemu.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
        )
    try:
        while time.monotonic() - started < limit:
            text = console.read_text(errors="replace") if console.exists() else ""
            result.report = parse_report(text)
            if result.report is not None or proc.returncode is not None:
                break
            await asyncio.sleep(1)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    result.seconds = time.monotonic() - started
    text = console.read_text(errors="replace") if console.exists() else ""
    result.console_tail = text[-3000:]
    if result.report is None:
        qemu_log = (workdir / "qemu.log").read_text(errors="replace")[-500:]
        result.error = (
            f"no report from the guest within {limit:.0f} s"
            if proc.returncode in (None, -9)
            else f"qemu exited ({proc.returncode}) before the guest reported: {qemu_log}"
        )
        return result
    result.mismatches = compare(expected, result.report)
    result.passed = not result.mismatches
    return result
