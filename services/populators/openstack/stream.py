"""The copy: one ordered stream from Glance into the volume, hashed, sparse, resumable.

Why this shape: Glance serves an image as one stream and its checksum covers the bytes in
order, so the copy is one reader, not several range readers. Threads form a pipeline so
the network never waits for the disk or the hash: the reader fills large page-aligned
buffers (``CHUNK``, reused, never reallocated), decrypting straight into them (the common
client's ``readinto_exactly``); a
hashing thread hashes each buffer in order (hashlib releases the GIL) while the writer
writes its non-zero blocks (O_DIRECT when the volume allows) and leaves all-zero blocks as
holes (Filesystem) or zeroes them cheaply (Block). A reset or timeout mid-stream reopens
the download with ``Range`` from the first byte not yet received: nothing is read twice,
and the hash carries on.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mmap
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from services.populators.common.failure import PopulatorFailure
from services.populators.common.metrics import Progress
from services.populators.common.tls import TlsError
from services.populators.common.volume import (
    VolumeWriter,
    aligned_buffer,
    all_zero,
    buffer_address,
)
from services.populators.openstack.glance import ATTEMPTS, TRANSIENT, Download, Glance, backoff

log = logging.getLogger("populator")

CHUNK = 8 << 20
BUFFERS = 4
BLOCK = 64 << 10  # zero detection granularity


@dataclass
class Result:
    size: int
    data_bytes: int  # written (non-zero blocks)
    digest: str
    resumes: int


class _Reader:
    """Fills buffers from the download, reopening it at the current offset after errors."""

    def __init__(self, glance: Glance, image_id: str, size: int, opened: Download | None) -> None:
        self.glance, self.image_id, self.size = glance, image_id, size
        self.pos = 0
        self.resumes = 0
        self._dl = opened  # a download already opened from offset 0, or None

    def _open(self) -> Download:
        dl = self.glance.open_data(self.image_id, self.pos, self.size)
        skip = self.pos - dl.start  # > 0 only if the server ignored Range
        if skip > 0:
            scratch = memoryview(bytearray(min(skip, CHUNK)))
            while skip > 0:
                n = min(skip, len(scratch))
                dl.conn.readinto_exactly(scratch[:n])
                skip -= n
        self._dl = dl
        return dl

    def fill(self, buf: mmap.mmap) -> int:
        """Read ``min(len(buf), bytes left)`` bytes into ``buf``, resuming as needed."""
        want = min(len(buf), self.size - self.pos)
        view = memoryview(buf)
        got, failures = 0, 0
        try:
            while got < want:
                dl = self._dl
                left_before: int | None = None
                try:
                    if dl is None:
                        dl = self._open()
                    left_before = dl.conn.body_left
                    dl.conn.readinto_exactly(view[got:want])
                    self.pos += want - got
                    got = want
                except TlsError:
                    raise
                except TRANSIENT as exc:
                    if dl is not None and left_before is not None:
                        n = left_before - (dl.conn.body_left or 0)
                        got, self.pos = got + n, self.pos + n
                    failures += 1
                    self.resumes += 1
                    self._drop()
                    if failures >= ATTEMPTS:
                        raise PopulatorFailure(
                            f"download of image {self.image_id} broke {ATTEMPTS} times in a row "
                            f"at byte {self.pos} of {self.size}, last: {exc!r}"
                        ) from exc
                    delay = backoff(failures - 1)
                    log.info(
                        "download broke at byte %d (%r): resuming with Range in %.1f s",
                        self.pos,
                        exc,
                        delay,
                    )
                    threading.Event().wait(delay)
        finally:
            view.release()
        return got

    def _drop(self) -> None:
        if self._dl is not None:
            self._dl.close()
            self._dl = None

    def close(self) -> None:
        self._drop()
        self.glance.close()


def _write_sparse(volume: VolumeWriter, buf: mmap.mmap, n: int, offset: int) -> int:
    """Write the non-zero blocks of ``buf[:n]`` as runs; zero runs become holes. Returns the
    bytes written. A buffer of zeros only (the common case in a sparse image's holes) is
    recognised with one in-place compare; otherwise each block is (``all_zero``)."""
    address = buffer_address(buf)
    if all_zero(buf, address, 0, n):
        volume.zero(offset, n)
        return 0
    written = 0
    run_start: int | None = None
    zero_start: int | None = None
    view = memoryview(buf)
    try:
        for i in range(0, n, BLOCK):
            if all_zero(buf, address, i, min(i + BLOCK, n)):
                if run_start is not None:
                    volume.write(view[run_start:i], offset + run_start)
                    written += i - run_start
                    run_start = None
                if zero_start is None:
                    zero_start = i
            else:
                if zero_start is not None:
                    volume.zero(offset + zero_start, i - zero_start)
                    zero_start = None
                if run_start is None:
                    run_start = i
        if run_start is not None:
            volume.write(view[run_start:n], offset + run_start)
            written += n - run_start
        if zero_start is not None:
            volume.zero(offset + zero_start, n - zero_start)
    finally:
        view.release()
    return written


def copy(
    glance: Glance,
    image_id: str,
    size: int,
    hash_algo: str,
    open_volume: Callable[[bytes], VolumeWriter],
    progress: Progress,
    opened: Download | None = None,
) -> tuple[Result, VolumeWriter]:
    """Stream the image into the volume ``open_volume(first_bytes)`` returns (the first bytes
    tell a qcow2 image from a raw one). The volume is returned open and not yet synced.

    Three threads: the reader fills buffers; this one writes each buffer while a hashing
    thread hashes it (in order); a buffer goes back to the reader once both are done."""
    reader = _Reader(glance, image_id, size, opened)
    free: queue.Queue[mmap.mmap] = queue.Queue()
    full: queue.Queue[tuple[mmap.mmap, int, int] | BaseException | None] = queue.Queue()
    buffers = [aligned_buffer(CHUNK) for _ in range(BUFFERS)]
    for b in buffers:
        free.put(b)
    stop = threading.Event()

    def read_all() -> None:
        try:
            while reader.pos < size and not stop.is_set():
                buf = free.get()
                if stop.is_set():
                    break
                offset = reader.pos
                n = reader.fill(buf)
                full.put((buf, offset, n))
            full.put(None)
        except BaseException as exc:
            full.put(exc)

    hasher = hashlib.new(hash_algo)
    hashing = ThreadPoolExecutor(1, thread_name_prefix="hash")  # one thread: updates in order
    volume: VolumeWriter | None = None
    data_bytes = 0
    thread = threading.Thread(target=read_all, name="glance-reader", daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        while (item := full.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            buf, offset, n = item
            hashed = hashing.submit(hasher.update, memoryview(buf)[:n])
            if volume is None:
                volume = open_volume(buf[:512])
            data_bytes += _write_sparse(volume, buf, n, offset)
            progress.add(n)
            hashed.add_done_callback(lambda _f, b=buf: free.put(b))  # type: ignore[misc]
        if volume is None:  # an empty image
            volume = open_volume(b"")
        hashing.shutdown(wait=True)
    except BaseException:
        if volume is not None:
            volume.close()
        raise
    finally:
        stop.set()
        hashing.shutdown(wait=True)
        free.put(buffers[0])  # wake a reader waiting for a buffer
        thread.join(30)
        reader.close()
        for b in buffers:
            with contextlib.suppress(BufferError):  # a view still held by a dead thread
                b.close()
    seconds = time.monotonic() - started
    log.info(
        "streamed %d bytes in %.2f s (%.0f MiB/s), %d written, the rest holes",
        size, seconds, size / max(seconds, 1e-6) / (1 << 20), data_bytes,
    )  # fmt: skip
    return Result(size, data_bytes, hasher.hexdigest(), reader.resumes), volume
