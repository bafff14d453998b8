"""One conversion: overlays on the volumes, the domain XML, virt-v2v-in-place, the commit.

virt-v2v-in-place changes the disks it is given, and a run that fails half-way (the
appliance killed, a guest it cannot convert after it began writing) may leave a guest
that no longer boots. So by default (``--overlay``, Forklift's ``V2V_overlayEnabled``)
it is given a qcow2 overlay per volume, in the pod's scratch space, backed by the volume:
every write lands in the overlay, and only a run that succeeded is committed into the
volumes (``qemu-img commit``). A failed run leaves the volumes exactly as the populators
filled them, and a re-run (a new migration) starts from the source's bytes. The price is
the scratch space for what the conversion wrote (tens of MiB: an initramfs, a few config
files) and the commit's copy of it. ``--no-overlay`` converts the volumes directly.

The commit is the one window left: a failure while writing disk 2 back after disk 1 was
written leaves them out of step; the result says ``OverlayCommitFailed`` (not permanent:
a new migration copies the disks again).

Everything virt-v2v prints goes to stdout, the pod's log, line by line as it comes; the
``i_*`` lines of its inspection report (``-v``) are kept for the result (which OS it
found), and its ``error:`` lines for the message.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import TextIO

from shared.conversion import (
    Accel,
    ConversionResult,
    ConvertArgs,
    Reason,
    domain_xml,
    libguestfs_env,
)

PROGRAM = "virt-v2v-in-place"
#: The ``i_*`` keys of virt-v2v's inspection report the result keeps.
OS_KEYS = ("type", "distro", "osinfo", "arch", "major_version", "minor_version", "product_name")
_INSPECTED = re.compile(r"^i_([a-z_]+) = (.*)$")
_ERROR = re.compile(r"^(virt-v2v(?:-in-place)?|nbdkit|qemu-img): error: (.*)$")


def run(
    args: ConvertArgs,
    *,
    scratch: Path,
    root: Path = Path("/"),
    program: str = PROGRAM,
    out: TextIO = sys.stdout,
) -> ConversionResult:
    """Convert the guest on ``args``' volumes (under ``root``: tests point it at a copy);
    never raises for what a conversion may meet, it says so in the result."""
    began = time.monotonic()

    def result(
        ok: bool, reason: str = "", message: str = "", found: dict[str, str] | None = None
    ) -> ConversionResult:
        seconds = round(time.monotonic() - began, 1)
        done = ConversionResult(
            ok, reason, message, os=found or {}, seconds=seconds, overlay=args.overlay
        )
        say(out, f"conversion {'succeeded' if ok else 'failed'} in {seconds} s: {message}")
        return done

    images = [_under(root, p) for p in args.images()]
    gone = [str(p) for p in images if not p.exists()]
    if gone:
        return result(False, Reason.VOLUME_MISSING, f"no volume at {', '.join(gone)}")
    if shutil.which(program) is None:
        return result(False, Reason.CONVERTER_MISSING, f"{program} is not installed")
    scratch.mkdir(parents=True, exist_ok=True)
    sources = [(str(p), "raw") for p in images]
    overlays: list[tuple[Path, Path]] = []
    if args.overlay:
        for i, image in enumerate(images):
            overlay = scratch / f"overlay{i}.qcow2"
            overlay.unlink(missing_ok=True)  # a restarted container starts over
            backing = ["-F", "raw", "-b", str(image)]
            made = _quiet(["qemu-img", "create", "-q", "-f", "qcow2", *backing, str(overlay)], out)
            if made:
                return result(False, Reason.VOLUME_MISSING, f"overlay on {image}: {made}")
            overlays.append((overlay, image))
        sources = [(str(o), "qcow2") for o, _ in overlays]
    xml = scratch / "domain.xml"
    xml.write_text(domain_xml(args, sources))
    say(out, f"domain XML for virt-v2v ({xml}):\n{xml.read_text()}")
    env = {**os.environ, **libguestfs_env(args.accel), "TMPDIR": str(scratch)}
    cache = os.environ.get("LIBGUESTFS_CACHEDIR", "/var/tmp")  # noqa: S108 (libguestfs's default)
    if not os.access(cache, os.W_OK):
        env["LIBGUESTFS_CACHEDIR"] = str(scratch)  # a read-only root: the appliance here
    if args.accel is Accel.AUTO and "LIBGUESTFS_BACKEND_SETTINGS" in env:
        say(out, "KVM cannot run the appliance here (PVM host or no /dev/kvm): TCG")
    command = [program, "-v", "-x", "-i", "libvirtxml", str(xml), "--root", "first"]
    say(out, "running: " + " ".join(command))
    code, inspected, errors = _stream(command, env, out)
    os_ = {k: inspected[k] for k in OS_KEYS if inspected.get(k)}
    if code != 0:
        why = "; ".join(errors[-3:]) or f"{program} exited with {code}"
        kept = " (the volumes are untouched: the overlays are dropped)" if args.overlay else ""
        return result(False, Reason.CONVERSION_FAILED, why + kept, os_)
    for overlay, image in overlays:
        failed = _quiet(["qemu-img", "commit", "-q", str(overlay)], out)
        if failed:
            return result(
                False, Reason.COMMIT_FAILED, f"writing the conversion back to {image}: {failed}"
            )
        overlay.unlink(missing_ok=True)
    what = " ".join(os_.get(k, "") for k in ("distro", "product_name")).strip() or "the guest"
    return result(True, "", f"converted {what} in place", os_)


def say(out: TextIO, line: str) -> None:
    out.write(f"hoist-converter: {line}\n")
    out.flush()


def _under(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def _quiet(command: list[str], out: TextIO) -> str:
    """Run a short command; "" when it succeeded, else what it said."""
    say(out, "running: " + " ".join(command))
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode == 0:
        return ""
    return (done.stderr or done.stdout).strip()[-500:] or f"exit {done.returncode}"


def _stream(
    command: list[str], env: dict[str, str], out: TextIO
) -> tuple[int, dict[str, str], list[str]]:
    """Run ``command``, copying its output to ``out`` as it comes; (exit code, inspection
    report, error lines)."""
    inspected: dict[str, str] = {}
    errors: deque[str] = deque(maxlen=10)
    try:
        proc = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        return 127, inspected, [str(exc)]
    assert proc.stdout is not None
    for line in proc.stdout:
        out.write(line)
        text = line.rstrip("\n")
        if match := _INSPECTED.match(text):
            inspected[match.group(1)] = match.group(2).strip()
        elif match := _ERROR.match(text):
            errors.append(match.group(2).strip())
    out.flush()
    return proc.wait(), inspected, list(errors)
