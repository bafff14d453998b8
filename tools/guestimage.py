"""Small bootable Debian guests, built once from Debian's packages and cached.

No migrated VM had ever booted: the demo's disks held patterns. These guests are real ones,
made the way an admin's VMs are (a distribution kernel, an initramfs, GRUB, systemd, an
``/etc/fstab`` that mounts a second disk by UUID), so a migration can be judged by what
matters: does the VM boot on the other side, with every disk and NIC it had.

What is built (``python -m tools.guestimage build``, or ``make guests``; each in raw and
qcow2)::

    bios-root    MBR, one ext4 root partition, GRUB for BIOS (i386-pc)
    uefi-root    GPT, an EFI system partition and an ext4 root; shim and GRUB signed by
                 Debian (so it boots with Secure Boot enforced and without), installed both
                 at EFI/debian and at the removable path EFI/BOOT (no NVRAM entry is needed)
    data         one ext4 filesystem on the whole disk; both roots mount it on /data by UUID

Every guest runs ``hoist-report.service`` when it reaches multi-user: one line on the serial
console saying what the kernel found (``tools/guest/hoist-report.sh``), which
``tools/bootcheck.py`` compares with the source VM.

Why a chroot on loop devices and not libguestfs: the appliance libguestfs boots needs a
working hypervisor, and the one on these machines (see ``tools/bootcheck.py``) cannot run a
stock kernel, so libguestfs would fall back to emulation and take minutes per step. The
build needs root (debootstrap, loop devices, mount); CI and the demo machines have it.

The cache is ``$HOIST_GUEST_CACHE`` (default ``~/.cache/hoist/guests``), one folder per
recipe: a change to this module or to the guest's files builds a new set; an interrupted
build leaves nothing a reader would take for finished (the folder is renamed into place).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
GUEST_FILES = HERE / "guest"
#: Bump when the build itself changes (partitioning, bootloader, configuration): the cached
#: guests of the old recipe are then not used.
RECIPE = 1
SUITE = "bookworm"
MIRROR = os.environ.get("HOIST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PACKAGES = (
    "linux-image-amd64",  # the generic kernel: the cloud one lacks AHCI, e1000, e1000e
    "systemd-sysv",
    "udev",
    "initramfs-tools",
    "kmod",
    "e2fsprogs",
    "dosfstools",
    "grub2-common",
    "grub-pc-bin",
    "grub-efi-amd64-bin",
    "grub-efi-amd64-signed",
    "shim-signed",
)
#: Kernel module trees no VM of ours needs: dropping them halves the root's size, so every
#: migration of a guest copies less.
UNNEEDED_MODULES = (
    "kernel/drivers/gpu",
    "kernel/drivers/net/wireless",
    "kernel/drivers/net/ethernet/mellanox",
    "kernel/drivers/net/ethernet/chelsio",
    "kernel/drivers/net/ethernet/qlogic",
    "kernel/drivers/net/ethernet/broadcom",
    "kernel/drivers/net/ethernet/sfc",
    "kernel/drivers/media",
    "kernel/drivers/infiniband",
    "kernel/drivers/staging",
    "kernel/drivers/bluetooth",
    "kernel/drivers/iio",
    "kernel/drivers/isdn",
    "kernel/drivers/scsi/lpfc",
    "kernel/drivers/scsi/qla2xxx",
    "kernel/drivers/scsi/mpt3sas",
    "kernel/sound",
    "kernel/net/wireless",
    "kernel/net/mac80211",
    "kernel/net/bluetooth",
)
GIB = 1 << 30
MIB = 1 << 20
ROOT_SIZE = 1 * GIB  # ~460 MiB used: room to spare, less for every copy to carry
DATA_SIZE = 256 * MIB
ESP_SIZE = 64 * MIB
#: Fixed filesystem ids: the root's fstab names the data disk's, and a test can name them.
UUIDS = {
    "bios-root": "6f1d0c2e-6b1a-4d35-9d7e-1b0a5e1c0b01",
    "uefi-root": "6f1d0c2e-6b1a-4d35-9d7e-1b0a5e1c0b02",
    "data": "6f1d0c2e-6b1a-4d35-9d7e-1b0a5e1c0d01",
}
ESP_SERIAL = "4B1D0E51"
DATA_MARKER = "hoist data disk"
GUESTS = ("bios-root", "uefi-root", "data")
FORMATS = ("raw", "qcow2")


class GuestBuildError(Exception):
    """The guests could not be built; the message says which step and why."""


@dataclass(frozen=True)
class GuestSet:
    """A finished, cached set of guest disks."""

    folder: Path

    def path(self, name: str, fmt: str = "qcow2") -> Path:
        if name not in GUESTS or fmt not in FORMATS:
            raise KeyError(f"guest disk {name}.{fmt}: expected one of {GUESTS} in {FORMATS}")
        return self.folder / f"{name}.{fmt}"

    def manifest(self) -> dict[str, object]:
        return json.loads((self.folder / "manifest.json").read_text())  # type: ignore[no-any-return]


def cache_root() -> Path:
    env = os.environ.get("HOIST_GUEST_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hoist" / "guests"


def recipe_key() -> str:
    """What the built disks depend on: ``RECIPE``, the guest's files, the packages, the
    layout constants. (Not this module's text: a reformatting must not cost a rebuild.)"""
    h = hashlib.sha256()
    for f in sorted(GUEST_FILES.iterdir()):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    layout = [RECIPE, SUITE, *PACKAGES, *UNNEEDED_MODULES, ROOT_SIZE, DATA_SIZE, ESP_SIZE]
    h.update(json.dumps([layout, UUIDS, ESP_SERIAL, DATA_MARKER]).encode())
    return h.hexdigest()[:16]


def cached() -> GuestSet | None:
    folder = cache_root() / recipe_key()
    return GuestSet(folder) if (folder / "manifest.json").exists() else None


def ensure(log: Path | None = None) -> GuestSet:
    """The cached guests, built first if missing (minutes; once per recipe and machine).
    Concurrent callers wait for one build."""
    found = cached()
    if found is not None:
        return found
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock"):
        found = cached()
        if found is not None:
            return found
        return build(root / recipe_key(), log)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def missing_tools() -> list[str]:
    """Commands the build needs that this machine lacks (``tools/system-deps.sh`` installs
    them on Debian)."""
    wanted = ["debootstrap", "sfdisk", "losetup", "mkfs.ext4", "mkfs.vfat", "mcopy", "qemu-img"]
    return [t for t in wanted if shutil.which(t) is None]


def build(dest: Path, log: Path | None = None) -> GuestSet:
    if os.geteuid() != 0:
        raise GuestBuildError("building the guests needs root (debootstrap, loop devices, mount)")
    lacking = missing_tools()
    if lacking:
        raise GuestBuildError(f"missing {', '.join(lacking)}: run tools/system-deps.sh")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=dest.parent))
    logf = log or work / "build.log"
    try:
        out = work / "out"
        out.mkdir()
        # The root tree outlives a failed build (it is most of the build's time), not a
        # finished one.
        rootfs = dest.parent / f".rootfs-{dest.name}"
        for stale in dest.parent.glob(".rootfs-*"):
            if stale != rootfs:
                shutil.rmtree(stale, ignore_errors=True)
        if not (rootfs / ".hoist-complete").exists():
            shutil.rmtree(rootfs, ignore_errors=True)
            _step("debootstrap", logf, _debootstrap, rootfs, logf)
            _step("configure the root", logf, _configure, rootfs, logf)
            (rootfs / ".hoist-complete").touch()
        _step("data disk", logf, _data_disk, work, out / "data.raw", logf)
        _step("BIOS root disk", logf, _root_disk, rootfs, out / "bios-root.raw", "bios", logf)
        _step("UEFI root disk", logf, _root_disk, rootfs, out / "uefi-root.raw", "uefi", logf)
        for name in GUESTS:
            _run(
                [
                    "qemu-img",
                    "convert",
                    "-f",
                    "raw",
                    "-O",
                    "qcow2",
                    "-c",
                    str(out / f"{name}.raw"),
                    str(out / f"{name}.qcow2"),
                ],
                logf,
            )
        kernel = sorted(p.name for p in (rootfs / "boot").glob("vmlinuz-*"))
        manifest = {
            "recipe": dest.name,
            "suite": SUITE,
            "packages": list(PACKAGES),
            "kernel": kernel[-1].removeprefix("vmlinuz-") if kernel else None,
            "uuids": UUIDS,
            "dataMarker": DATA_MARKER,
            "sizes": {n: (out / f"{n}.raw").stat().st_size for n in GUESTS},
            "buildSeconds": round(time.monotonic() - started, 1),
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        out.rename(dest)
        shutil.rmtree(rootfs, ignore_errors=True)
        return GuestSet(dest)
    finally:
        _unmount_all(work)
        shutil.rmtree(work, ignore_errors=True)


def _step(what: str, log: Path, fn: Callable[..., None], *args: object) -> None:
    with log.open("a") as f:
        f.write(f"\n==== {what}\n")
    try:
        fn(*args)
    except subprocess.CalledProcessError as exc:
        tail = log.read_text(errors="replace")[-2000:]
        raise GuestBuildError(f"{what}: {' '.join(map(str, exc.cmd))} failed:\n{tail}") from None


def _run(argv: list[str], log: Path, **kw: object) -> str:
    with log.open("a") as f:
        f.write("$ " + " ".join(argv) + "\n")
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=f, text=True, check=False, **kw)  # type: ignore[call-overload]
        f.write(done.stdout)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, argv)
    return str(done.stdout)


def _debootstrap(rootfs: Path, log: Path) -> None:
    _run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(rootfs),
            MIRROR,
        ],
        log,
    )


def _configure(rootfs: Path, log: Path) -> None:
    etc = rootfs / "etc"
    (etc / "hostname").write_text("hoist-guest\n")
    (etc / "hosts").write_text("127.0.0.1 localhost\n127.0.1.1 hoist-guest\n")
    (rootfs / "data").mkdir(exist_ok=True)
    # Read by update-initramfs (below), which puts fsck.ext4 in the initramfs only if the
    # root is ext4 here; each disk gets its own fstab with the UUIDs.
    (etc / "fstab").write_text("/dev/root / ext4 errors=remount-ro 0 1\n")
    # A serial console for the kernel and GRUB: the boot check and an admin's
    # `virtctl console` both read it.
    (etc / "default" / "grub").write_text(
        'GRUB_DEFAULT=0\nGRUB_TIMEOUT=1\nGRUB_DISTRIBUTOR="Debian"\n'
        'GRUB_CMDLINE_LINUX_DEFAULT=""\n'
        'GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8"\n'
        'GRUB_TERMINAL="console serial"\n'
        'GRUB_SERIAL_COMMAND="serial --speed=115200"\n'
    )
    sbin = rootfs / "usr" / "local" / "sbin"
    sbin.mkdir(parents=True, exist_ok=True)
    shutil.copy(GUEST_FILES / "hoist-report.sh", sbin / "hoist-report")
    (sbin / "hoist-report").chmod(0o755)
    units = etc / "systemd" / "system"
    shutil.copy(GUEST_FILES / "hoist-report.service", units / "hoist-report.service")
    wants = units / "multi-user.target.wants"
    wants.mkdir(exist_ok=True)
    link = wants / "hoist-report.service"
    link.unlink(missing_ok=True)
    link.symlink_to("/etc/systemd/system/hoist-report.service")
    # A getty on the serial console would write its prompt over the report: not needed.
    (units / "serial-getty@ttyS0.service").unlink(missing_ok=True)
    (units / "serial-getty@ttyS0.service").symlink_to("/dev/null")
    for tree in ("usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/info"):
        shutil.rmtree(rootfs / tree, ignore_errors=True)
        (rootfs / tree).mkdir(parents=True, exist_ok=True)
    shutil.rmtree(rootfs / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    (rootfs / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True)
    for lists in (rootfs / "var" / "lib" / "apt" / "lists").glob("*_*"):
        lists.unlink()
    for modules in (rootfs / "lib" / "modules").iterdir():
        for tree in UNNEEDED_MODULES:
            shutil.rmtree(modules / tree, ignore_errors=True)
        _run(["chroot", str(rootfs), "depmod", "-a", modules.name], log)
    with _chroot_mounts(rootfs):
        _run(["chroot", str(rootfs), "update-initramfs", "-u", "-k", "all"], log)
    _run(["chroot", str(rootfs), "passwd", "-l", "root"], log)


def _data_disk(work: Path, image: Path, log: Path) -> None:
    content = work / "data-content"
    content.mkdir()
    (content / "hoist-data.txt").write_text(DATA_MARKER + "\n")
    with image.open("wb") as f:
        f.truncate(DATA_SIZE)
    _run(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            "data",
            "-U",
            UUIDS["data"],
            "-d",
            str(content),
            "-E",
            "root_owner=0:0",
            str(image),
        ],
        log,
    )


def _fstab(variant: str) -> str:
    lines = [
        f"UUID={UUIDS[variant + '-root']} / ext4 errors=remount-ro 0 1",
        f"UUID={UUIDS['data']} /data ext4 defaults 0 2",
    ]
    if variant == "uefi":
        esp = f"{ESP_SERIAL[:4]}-{ESP_SERIAL[4:]}"
        lines.append(f"UUID={esp} /boot/efi vfat umask=0077 0 1")
    return "\n".join(lines) + "\n"


def _root_disk(rootfs: Path, image: Path, variant: str, log: Path) -> None:
    with image.open("wb") as f:
        f.truncate(ROOT_SIZE)
    esp_start = 1 * MIB
    root_start = esp_start + (ESP_SIZE if variant == "uefi" else 0)
    if variant == "bios":
        table = f"label: dos\nstart={root_start // 512}, type=83, bootable\n"
    else:
        table = (
            "label: gpt\n"
            f"start={esp_start // 512}, size={ESP_SIZE // 512}, "
            'type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI system partition"\n'
            f"start={root_start // 512}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root\n"
        )
    _run(["sfdisk", "-q", str(image)], log, input=table)
    if variant == "bios":
        _embed_grub_bios(rootfs, image, log)
    mnt = image.parent / f"mnt-{variant}"
    mnt.mkdir()
    loops: list[str] = []
    try:
        # One loop device per partition, at its offset: the kernels of some hosts (these
        # machines' among them) cannot read a partition table, so no loopNpM appears.
        root_dev = _loop(image, root_start, _partition_bytes(image, root_start, log), log)
        loops.append(root_dev)
        uuid = UUIDS[f"{variant}-root"]
        _run(["mkfs.ext4", "-q", "-F", "-L", "root", "-U", uuid, root_dev], log)
        _run(["mount", root_dev, str(mnt)], log)
        _run(["cp", "-a", f"{rootfs}/.", str(mnt)], log)
        (mnt / ".hoist-complete").unlink(missing_ok=True)
        (mnt / "etc" / "fstab").write_text(_fstab(variant))
        if variant == "uefi":
            (mnt / "boot" / "efi").mkdir(parents=True, exist_ok=True)
            _esp(mnt, image, esp_start, uuid, log)
        else:
            shutil.copytree(mnt / "usr/lib/grub/i386-pc", mnt / "boot/grub/i386-pc")
        (mnt / "boot" / "grub").mkdir(parents=True, exist_ok=True)
        (mnt / "boot" / "grub" / "grub.cfg").write_text(_grub_cfg(mnt, uuid, variant))
        _run(["fstrim", str(mnt)], log)
    finally:
        _unmount_all(mnt)
        for loop in loops:
            subprocess.run(["losetup", "-d", loop], check=False, capture_output=True)
        with contextlib.suppress(OSError):
            mnt.rmdir()


def _partition_bytes(image: Path, start: int, log: Path) -> int:
    """How long the partition at ``start`` is, as the partition table says (on GPT the
    backup table takes the disk's last sectors: a filesystem to the end would overwrite
    it, and outgrow its partition)."""
    table = json.loads(_run(["sfdisk", "--json", str(image)], log))["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    for part in table["partitions"]:
        if int(part["start"]) * sector == start:
            return int(part["size"]) * sector
    raise GuestBuildError(f"{image}: no partition starts at byte {start}")


def _loop(image: Path, offset: int, size: int, log: Path) -> str:
    return _run(
        [
            "losetup",
            "--find",
            "--show",
            "--offset",
            str(offset),
            "--sizelimit",
            str(size),
            str(image),
        ],
        log,
    ).strip()


def _embed_grub_bios(rootfs: Path, image: Path, log: Path) -> None:
    """GRUB for BIOS, laid out as ``grub-install`` lays it out on an MBR disk: boot.img in
    the MBR (the partition table kept), core.img from sector 1 in the gap before the first
    partition. boot.img's default says core.img is at sector 1 and diskboot's default
    blocklist that the rest follows at sector 2, so nothing needs patching; core.img finds
    the root by its filesystem UUID (as grub-install's does) and loads the rest from it.
    The guest's own GRUB makes the images (in a chroot): the host needs no GRUB."""
    lib = rootfs / "usr/lib/grub/i386-pc"
    early = rootfs / "tmp/early-bios.cfg"
    early.write_text(f"search.fs_uuid {UUIDS['bios-root']} root\nset prefix=($root)/boot/grub\n")
    core = rootfs / "tmp/core.img"
    _run(
        [
            "chroot",
            str(rootfs),
            "grub-mkimage",
            "-O",
            "i386-pc",
            "-o",
            "/tmp/core.img",  # noqa: S108 - inside the guest's root, a chroot's /tmp
            "-c",
            "/tmp/early-bios.cfg",  # noqa: S108 - as above
            "-p",
            "/boot/grub",
            "biosdisk",
            "part_msdos",
            "ext2",
            "search_fs_uuid",
        ],
        log,
    )
    try:
        if core.stat().st_size > MIB - 512:
            raise GuestBuildError("core.img does not fit before the first partition")
        boot = (lib / "boot.img").read_bytes()
        with image.open("r+b") as f:
            f.write(boot[:440])  # the MBR's code; its disk signature and table stay
            f.seek(512)
            f.write(core.read_bytes())
    finally:
        core.unlink(missing_ok=True)
        early.unlink(missing_ok=True)


def _esp(rootfs: Path, image: Path, offset: int, root_uuid: str, log: Path) -> None:
    """The EFI system partition: Debian's signed shim and GRUB at EFI/debian (where the
    signed GRUB looks for its grub.cfg) and at the removable path EFI/BOOT, which firmware
    without an NVRAM boot entry starts (KubeVirt's EFI variables do not persist by default).
    Made as a file with mtools and written into place: no vfat mount, which some hosts'
    kernels (these machines' among them) cannot do."""
    shim = rootfs / "usr/lib/shim"
    grub = rootfs / "usr/lib/grub/x86_64-efi-signed"
    stub = (
        f"search.fs_uuid {root_uuid} root\n"
        "set prefix=($root)'/boot/grub'\nconfigfile $prefix/grub.cfg\n"
    )
    staging = image.parent / "esp-tree"
    for folder, loader in (("debian", "shimx64.efi"), ("BOOT", "BOOTX64.EFI")):
        dest = staging / "EFI" / folder
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shim / "shimx64.efi.signed", dest / loader)
        shutil.copyfile(shim / "mmx64.efi.signed", dest / "mmx64.efi")
        shutil.copyfile(grub / "grubx64.efi.signed", dest / "grubx64.efi")
        (dest / "grub.cfg").write_text(stub)
    shutil.copyfile(shim / "BOOTX64.CSV", staging / "EFI/debian/BOOTX64.CSV")
    esp = image.parent / "esp.img"
    esp.unlink(missing_ok=True)
    _run(
        [
            "mkfs.vfat",
            "-C",
            "-F",
            "32",
            "-n",
            "ESP",
            "-i",
            ESP_SERIAL,
            str(esp),
            str(ESP_SIZE // 1024),
        ],
        log,
    )
    _run(["mcopy", "-s", "-i", str(esp), str(staging / "EFI"), "::/"], log)
    with esp.open("rb") as src, image.open("r+b") as dst:
        dst.seek(offset)
        shutil.copyfileobj(src, dst, 4 * MIB)
    esp.unlink()
    shutil.rmtree(staging)


def _grub_cfg(mnt: Path, root_uuid: str, variant: str) -> str:
    """The menu ``update-grub`` would write for this one kernel (``update-grub`` itself
    cannot run here: it probes the root's disk, which a loop device at an offset hides);
    the guest's own ``update-grub`` (a kernel update, virt-v2v) rewrites it on a real
    disk."""
    kernels = sorted((mnt / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise GuestBuildError("no kernel in the root's /boot")
    version = kernels[-1].name.removeprefix("vmlinuz-")
    cmdline = f"root=UUID={root_uuid} ro console=tty0 console=ttyS0,115200n8"
    modules = "insmod part_msdos\ninsmod ext2\n" if variant == "bios" else ""
    return (
        "# Written by Hoist's guest builder (tools/guestimage.py) as update-grub would.\n"
        "set default=0\nset timeout=1\n"
        "serial --speed=115200\nterminal_input console serial\nterminal_output console serial\n"
        f"{modules}"
        f"search --no-floppy --fs-uuid --set=root {root_uuid}\n"
        f"menuentry 'Debian GNU/Linux, with Linux {version}' {{\n"
        f"\tlinux /boot/vmlinuz-{version} {cmdline}\n"
        f"\tinitrd /boot/initrd.img-{version}\n"
        "}\n"
    )


@contextlib.contextmanager
def _chroot_mounts(root: Path) -> Iterator[None]:
    """/dev, /proc and /sys inside ``root``: grub-install and update-initramfs probe them."""
    done: list[Path] = []
    try:
        for fs in ("dev", "proc", "sys"):
            target = root / fs
            target.mkdir(exist_ok=True)
            subprocess.run(["mount", "--bind", f"/{fs}", str(target)], check=True)
            done.append(target)
        yield
    finally:
        for target in reversed(done):
            subprocess.run(["umount", "-l", str(target)], check=False)


def _unmount_all(under: Path) -> None:
    """Unmount whatever an interrupted build left mounted below ``under``, deepest first."""
    prefix = str(under.resolve())
    with open("/proc/mounts") as f:
        points = [line.split()[1] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.guestimage", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the guests unless cached; print their folder")
    b.add_argument("--force", action="store_true", help="build again even if cached")
    sub.add_parser("path", help="print the cached guests' folder (exit 1 if not built)")
    args = parser.parse_args(argv)
    if args.command == "path":
        found = cached()
        if found is None:
            print("not built: make guests", file=sys.stderr)
            return 1
        print(found.folder)
        return 0
    if args.force and cached() is not None:
        shutil.rmtree(cache_root() / recipe_key())
    try:
        guests = ensure()
    except GuestBuildError as exc:
        print(f"guestimage: {exc}", file=sys.stderr)
        return 1
    print(guests.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
