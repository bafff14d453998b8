"""The OpenStack populator's flow: authenticate, wait for the image, copy, verify, convert.

1. Get a token and Glance's URL from Keystone (``--endpoint``, the provider's identity URL).
2. Read the image; wait while it is ``queued``/``saving`` (an upload still running), up to
   ``--image-wait`` seconds; fail at once if it is ``killed`` or gone.
3. Stream ``/file`` into the volume (``stream.copy``): sparse, resumable, hashed.
4. Compare the hash with Glance's ``os_hash_value`` (else its MD5 ``checksum``); a mismatch
   fails the pod: the volume's bytes are not the image's.
5. A qcow2 image (by its magic bytes, whatever ``disk_format`` says) is downloaded into a
   scratch file on the same Filesystem volume and converted to raw ``disk.img`` with
   ``qemu-img convert``. A Block volume has no room for the scratch file: that fails with a
   line saying the image needs conversion (upload it with ``disk_format=raw``).
6. fsync; only then is progress 100.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from services.populators.common.failure import PopulatorFailure
from services.populators.common.metrics import Progress
from services.populators.common.volume import VolumeWriter
from services.populators.openstack.glance import Download, Glance
from services.populators.openstack.identity import HttpClient, OpenStackCredentials, Session
from services.populators.openstack.stream import copy

log = logging.getLogger("populator")

QCOW2_MAGIC = b"QFI\xfb"
SCRATCH = ".hoist-qcow2"


@dataclass
class Outcome:
    image_url: str
    size: int
    data_bytes: int
    algo: str
    resumes: int
    retries: int
    reauths: int
    converted: bool
    direct: bool


def _expected(meta: dict[str, object]) -> tuple[str, str]:
    """(hashlib name, hex digest) Glance recorded for the image."""
    algo, value = meta.get("os_hash_algo"), meta.get("os_hash_value")
    if isinstance(algo, str) and isinstance(value, str) and algo and value:
        if algo not in {"sha256", "sha384", "sha512", "sha1", "md5"}:
            raise PopulatorFailure(f"image uses hash algorithm {algo!r}, which we cannot verify")
        return algo, value.lower()
    checksum = meta.get("checksum")
    if isinstance(checksum, str) and checksum:
        return "md5", checksum.lower()
    raise PopulatorFailure(
        "Glance recorded no checksum for the image (no os_hash_value, no checksum): "
        "refusing to copy bytes that cannot be verified"
    )


def _convert(scratch: Path, target_dir: Path, pvc_size: int) -> None:
    """qcow2 scratch file -> sparse raw ``disk.img`` next to it; removes the scratch."""
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        raise PopulatorFailure(
            "the image is qcow2 and needs conversion, but qemu-img is not installed in the "
            "populator image"
        )
    info = subprocess.run(
        [qemu_img, "info", "--output=json", "-f", "qcow2", str(scratch)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if info.returncode != 0:
        raise PopulatorFailure(f"qemu-img info on the downloaded qcow2 failed: {info.stderr}")
    virtual = int(json.loads(info.stdout)["virtual-size"])
    if pvc_size and virtual > pvc_size:
        raise PopulatorFailure(
            f"the qcow2 image's virtual size is {virtual} bytes, the PVC only {pvc_size}: "
            "the PVC is too small"
        )
    target = target_dir / "disk.img"
    target.unlink(missing_ok=True)
    done = subprocess.run(
        [qemu_img, "convert", "-f", "qcow2", "-O", "raw", str(scratch), str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise PopulatorFailure(f"qemu-img convert qcow2 -> raw failed: {done.stderr.strip()}")
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    shutil.rmtree(scratch.parent, ignore_errors=True)


def _copy_and_verify(
    glance: Glance,
    image_id: str,
    meta: dict[str, object],
    volume_path: Path,
    progress: Progress,
    opened: Download | None,
    pvc_size: int,
) -> tuple[int, int, str, bool, bool, int]:
    """The blocking part: (size, data bytes, algo, converted, direct, resumes)."""
    size = int(str(meta.get("size") or 0))
    algo, expected = _expected(meta)
    if pvc_size and size > pvc_size and meta.get("disk_format") != "qcow2":
        raise PopulatorFailure(
            f"image {image_id} holds {size} bytes, the PVC only {pvc_size}: the PVC is too small"
        )
    progress.set_total(size)
    qcow2 = False

    def open_volume(first: bytes) -> VolumeWriter:
        nonlocal qcow2
        qcow2 = first.startswith(QCOW2_MAGIC)
        if not qcow2:
            return VolumeWriter.open(volume_path, size)
        if not volume_path.is_dir():
            raise PopulatorFailure(
                f"image {image_id} is qcow2 and needs conversion to raw, but the volume is a "
                "Block device with no room for the download: upload the image with "
                "disk_format=raw (os-volume_upload_image does) or use a Filesystem volume"
            )
        scratch = volume_path / SCRATCH
        scratch.mkdir(exist_ok=True)
        log.info("image %s is qcow2: downloading to %s for conversion", image_id, scratch)
        return VolumeWriter.open(scratch, size)

    result, volume = copy(glance, image_id, size, algo, open_volume, progress, opened)
    try:
        if result.digest != expected:
            raise PopulatorFailure(
                f"checksum mismatch for image {image_id}: Glance recorded {algo} {expected}, "
                f"the {size} bytes received hash to {result.digest}; the volume is not a copy "
                "of the image (the pod fails so the disk is copied again)"
            )
        log.info("%s verified: %s", algo, expected)
        volume.finish()
        direct = volume.direct
    finally:
        volume.close()
    if qcow2:
        _convert(volume_path / SCRATCH / "disk.img", volume_path, pvc_size)
    return size, result.data_bytes, algo, qcow2, direct, result.resumes


def _open_early(glance: Glance, image_id: str) -> Download | None:
    """The download from offset 0, or None if Glance has no data to give yet."""
    try:
        return glance.open_data(image_id, 0, 0)
    except PopulatorFailure as exc:
        log.info("image %s not downloadable yet: %s", image_id, exc)
        return None


async def populate(
    endpoint: str,
    image_id: str,
    volume_path: Path,
    creds: OpenStackCredentials,
    progress: Progress,
    image_wait: float,
    pvc_size: int = 0,
) -> Outcome:
    client = HttpClient(creds.tls())
    session = Session(endpoint, creds, client)
    glance = Glance(session)
    log.info("identity %s, image %s, %s", endpoint, image_id, creds.describe())
    try:
        await asyncio.to_thread(session.authenticate)
        # The metadata and the download are requested at once: each costs Glance a token
        # validation, and most images are active already. If this one is not, the early
        # download is dropped and we wait for the image.
        meta, opened = await asyncio.gather(
            asyncio.to_thread(glance.image, image_id),
            asyncio.to_thread(_open_early, glance, image_id),
        )
        if meta.get("status") != "active" or opened is None:
            if opened is not None:
                opened.close()
            opened = None
            meta = await asyncio.to_thread(glance.wait_active, image_id, image_wait)
        log.info(
            "image %s: %s, %s bytes, disk_format %s",
            image_id,
            meta.get("name"),
            meta.get("size"),
            meta.get("disk_format"),
        )
        size, data, algo, converted, direct, resumes = await asyncio.to_thread(
            _copy_and_verify, glance, image_id, meta, volume_path, progress, opened, pvc_size
        )
    finally:
        client.close()
    progress.done()
    return Outcome(
        session.image_url,
        size,
        data,
        algo,
        resumes,
        glance.retries,
        glance.reauths,
        converted,
        direct,
    )
