"""The target volume: ``disk.img`` in a Filesystem-mode mount, or a Block-mode device.

How a populator uses it::

    with VolumeWriter.open(args.volume_path, virtual_size) as volume:
        volume.zero(offset, length)          # a zero extent of the source (a hole)
        volume.write(buffer_view, offset)    # data, from a page-aligned buffer
        volume.finish()                      # fsync: only now is the copy durable

Why it is shaped like this:

* Filesystem mode (``--volume-path`` is a directory): ``<dir>/disk.img`` is truncated to
  zero and then to the disk's virtual size, so it starts as one hole and zero extents need
  no writes at all (the file stays sparse).
* A later stage of a warm copy (``fresh=False``) finds the earlier stages' data in the
  volume and writes only what changed, so nothing is truncated or discarded on open, and
  ``zero`` really zeroes, in Filesystem mode too (a punched hole: it stays sparse).
* Block mode (a block device, or a regular file standing in for one): the device may hold
  old data, so zero extents are zeroed explicitly (BLKZEROOUT on devices, a punched hole on
  files, written zeros when neither works).
* Writes use O_DIRECT when the filesystem accepts it: on these VMs filling fresh page-cache
  pages cost as much CPU as the whole download. Direct I/O needs aligned offsets, lengths
  and memory, so callers pass page-aligned buffers (``aligned_buffer``) and any unaligned
  tail goes through a second, buffered descriptor. Filesystems that refuse O_DIRECT
  (tmpfs, some FUSE) get the buffered descriptor for everything.
* ``pwrite`` from several threads at once is safe (no shared file offset); the GIL is
  released while the kernel copies.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import mmap
import os
import stat
import struct
from pathlib import Path
from types import TracebackType

from services.populators.common.failure import PopulatorFailure

ALIGN = 4096
BLKGETSIZE64 = 0x80081272
BLKZEROOUT = 0x127F
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
_ZERO_CHUNK = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)
_fallocate = _libc.fallocate
_fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_fallocate.restype = ctypes.c_int
_memcmp = _libc.memcmp
_memcmp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
_memcmp.restype = ctypes.c_int


class VolumeError(PopulatorFailure):
    """The volume cannot hold the disk, or refused a write or the final sync."""


def aligned_buffer(size: int) -> mmap.mmap:
    """Page-aligned memory for O_DIRECT, allocated once per reader and reused."""
    return mmap.mmap(-1, (size + ALIGN - 1) // ALIGN * ALIGN)


def buffer_address(buf: mmap.mmap) -> int:
    """Where ``buf``'s memory starts; valid while ``buf`` stays open (an mmap never moves).
    The ctypes view is dropped at once, so ``buf.close()`` still works afterwards."""
    ref = ctypes.c_char.from_buffer(buf)
    address = ctypes.addressof(ref)
    del ref
    return address


def all_zero(buf: mmap.mmap, address: int, start: int, end: int) -> bool:
    """Whether ``buf[start:end]`` holds only zero bytes (``address`` from ``buffer_address``).

    Why not ``buf[start:end] == bytes(n)``: that copies the block first, with the GIL held.
    Here it is one ``memcmp`` of the block against itself shifted by a byte (all bytes equal
    to their neighbour, and the first is zero), in place, with the GIL released; a data block
    usually fails on its first byte."""
    if end - start <= 0:
        return True
    if buf[start] != 0:
        return False
    return int(_memcmp(address + start, address + start + 1, end - start - 1)) == 0


class VolumeWriter:
    def __init__(
        self,
        path: Path,
        size: int,
        mode: str,
        fd: int,
        direct_fd: int | None,
        fresh: bool = True,
    ) -> None:
        self.path = path
        self.size = size
        self.mode = mode  # "filesystem" | "block"
        self.fresh = fresh
        self._fd = fd
        self._direct_fd = direct_fd
        self.zeroed = 0

    @property
    def direct(self) -> bool:
        return self._direct_fd is not None

    @classmethod
    def open(cls, volume_path: Path, size: int, fresh: bool = True) -> VolumeWriter:
        """``fresh=False``: keep what the volume holds (a later stage of a warm copy)."""
        try:
            return cls._open(volume_path, size, fresh)
        except OSError as exc:
            raise VolumeError(f"cannot open the volume at {volume_path}: {exc}") from exc

    @classmethod
    def _open(cls, volume_path: Path, size: int, fresh: bool) -> VolumeWriter:
        try:
            st = os.stat(volume_path)
        except FileNotFoundError:
            raise VolumeError(
                f"volume path {volume_path} does not exist: the pod has no volume mounted there"
            ) from None
        if stat.S_ISDIR(st.st_mode):
            path, mode = volume_path / "disk.img", "filesystem"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o660)
            if fresh:
                os.ftruncate(fd, 0)  # a rerun starts from one hole, never from stale data
            try:
                if fresh or os.fstat(fd).st_size != size:
                    os.ftruncate(fd, size)
            except OSError as exc:
                os.close(fd)
                raise VolumeError(f"cannot size {path} to {size} bytes: {exc}") from exc
        else:
            path, mode = volume_path, "block"
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            have = cls._device_size(fd, st)
            if have < size:
                os.close(fd)
                raise VolumeError(
                    f"block volume {path} holds {have} bytes, the disk needs {size}: "
                    "the PVC is too small"
                )
        direct_fd: int | None
        try:
            direct_fd = os.open(path, os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                raise
            direct_fd = None  # this filesystem refuses O_DIRECT: buffered writes only
        return cls(path, size, mode, fd, direct_fd, fresh)

    @staticmethod
    def _device_size(fd: int, st: os.stat_result) -> int:
        if stat.S_ISBLK(st.st_mode):
            buf = fcntl.ioctl(fd, BLKGETSIZE64, b"\0" * 8)
            return int(struct.unpack("Q", buf)[0])
        return st.st_size

    def write(self, data: memoryview, offset: int) -> None:
        try:
            self._write(data, offset)
        except OSError as exc:
            raise VolumeError(
                f"writing {len(data)} bytes at offset {offset} of {self.path} failed: {exc}"
            ) from exc

    def _write(self, data: memoryview, offset: int) -> None:
        """Write all of ``data`` at ``offset``; ``data`` from ``aligned_buffer`` goes direct,
        anything else (or an unaligned tail) through the page cache."""
        n = len(data)
        aligned = n // ALIGN * ALIGN if offset % ALIGN == 0 else 0
        done = 0
        if self._direct_fd is not None and aligned:
            try:
                while done < aligned:
                    done += os.pwrite(self._direct_fd, data[done:aligned], offset + done)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # memory not page-aligned (not from aligned_buffer): the buffered path
        while done < n:
            done += os.pwrite(self._fd, data[done:], offset + done)

    def zero(self, offset: int, length: int) -> None:
        """Make ``[offset, offset+length)`` read as zeros without writing it if we can.
        Adds to ``zeroed`` what it had to zero (nothing in a fresh ``disk.img``)."""
        if (self.mode == "filesystem" and self.fresh) or length <= 0:
            return  # a fresh sparse disk.img is zero already
        self.zeroed += length
        with contextlib.suppress(OSError):
            st = os.fstat(self._fd)
            if stat.S_ISBLK(st.st_mode):
                fcntl.ioctl(self._fd, BLKZEROOUT, struct.pack("QQ", offset, length))
                return
            mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
            if _fallocate(self._fd, mode, offset, length) == 0:
                return
        zeros = memoryview(bytes(_ZERO_CHUNK))
        pos = offset
        while pos < offset + length:
            n = min(_ZERO_CHUNK, offset + length - pos)
            self.write(zeros[:n], pos)
            pos += n

    def finish(self) -> None:
        """fsync: the copy counts only once the data is on stable storage."""
        try:
            if self._direct_fd is not None:
                os.fsync(self._direct_fd)
            os.fsync(self._fd)
        except OSError as exc:
            raise VolumeError(f"syncing {self.path} to stable storage failed: {exc}") from exc

    def close(self) -> None:
        for fd in (self._direct_fd, self._fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._direct_fd = None

    def __enter__(self) -> VolumeWriter:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
