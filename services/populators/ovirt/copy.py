"""The copy: data extents read by parallel range readers, written where they belong.

Why this shape: the imageio daemon serves several connections per ticket
(``max_readers``), TLS and the kernel's copy dominate the client's CPU, and page-cache
writes cost as much as the download on small VMs. So: up to ``min(max_readers, 4)``
threads (one when the ranges are small: ``readers_for``), each with one keep-alive
connection and one reused page-aligned buffer, take the next chunk of a data extent, read
it straight into the buffer and ``pwrite`` it (O_DIRECT when the volume allows). Zero
extents are never read: they become holes. A connection reset, a timeout or a 5xx burst
makes that reader reconnect and read the same chunk again (with backoff), so a run resumes
where it was; a 403 (ticket gone) or a TLS refusal stops everything at once. Each reader
asks for its next chunk before it takes the bytes of the current one (HTTP pipelining), so
imageio reads ahead from qemu-nbd while the reader decrypts and writes: each connection
stays busy without more threads.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from services.populators.common.failure import PopulatorFailure
from services.populators.common.metrics import Progress
from services.populators.common.volume import VolumeWriter, aligned_buffer
from services.populators.ovirt.source import (
    Extent,
    ImageioSource,
    Reader,
    Transient,
    retrying,
)

log = logging.getLogger("populator")

CHUNK = 8 << 20  # 4 MiB cost ~7% more CPU per GiB (more requests and writes)
MAX_READERS = 4
SMALL_RANGES_READERS = 1
SMALL_RANGE = 4 << 20


def chunks(extents: list[Extent], size: int = CHUNK) -> Iterator[tuple[int, int]]:
    for e in extents:
        if e.zero:
            continue
        pos = e.start
        while pos < e.start + e.length:
            n = min(size, e.start + e.length - pos)
            yield pos, n
            pos += n


def readers_for(extents: list[Extent], max_readers: int) -> int:
    """How many connections to read with: at most imageio's ``max_readers``; four when the
    ranges are large, one when they are small (mean under ``SMALL_RANGE``).

    Why: with large ranges more connections mean more of the daemon's threads reading
    qemu-nbd and encrypting at once (two readers were ~5% slower on the 4 GiB benchmark
    disk). With small ranges (a disk of scattered 1 MiB extents) each range costs the
    client a request, a write and a few wake-ups, and several reader threads on two cores
    hand the GIL back and forth at every 16 KiB TLS record: two readers took ~10% off the
    CPU per GiB of four there, and one reader another ~18% off two (medians of six
    interleaved runs, 1.28 against 1.57 s/GiB), at the same speed: pipelined requests keep
    the one connection busy, and the cores the client leaves free go to imageio."""
    spans = list(chunks(extents))
    if not spans:
        return 1
    mean = sum(n for _, n in spans) / len(spans)
    wanted = MAX_READERS if mean >= SMALL_RANGE else SMALL_RANGES_READERS
    return max(1, min(max_readers, wanted))


class Copier:
    def __init__(
        self,
        source: ImageioSource,
        volume: VolumeWriter,
        progress: Progress,
        readers: int,
        count_zeros: bool = False,
    ) -> None:
        self.source = source
        self.volume = volume
        self.progress = progress
        # A later stage's zeroing is real work on a volume holding data, so it counts;
        # a fresh volume's holes cost nothing and the cold copy's percent is data only.
        self.count_zeros = count_zeros
        self.readers = max(1, readers)
        self.retries = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._work: Iterator[tuple[int, int]] = iter(())
        self._last_activity = time.monotonic()

    @property
    def idle_seconds(self) -> float:
        """Since imageio last saw a request from us: zeroing a big block device before the
        first read, or a stalled volume, must not let the ticket's inactivity timeout hit."""
        return time.monotonic() - self._last_activity

    def run(self, extents: list[Extent]) -> None:
        """Zero the zero extents, then read and write the data extents; ``extents`` need
        not cover the disk (a stage's list holds only what changed)."""
        for e in extents:
            if e.zero:
                if self._stop.is_set():
                    raise PopulatorFailure("stopped before the copy started")
                self.volume.zero(e.start, e.length)
                if self.count_zeros:
                    self.progress.add(e.length)
        self._work = chunks(extents)
        with ThreadPoolExecutor(self.readers, thread_name_prefix="reader") as pool:
            futures = [pool.submit(self._reader) for _ in range(self.readers)]
            errors = [f.exception() for f in futures]
        failures = [e for e in errors if e is not None]
        if failures:
            first = next((e for e in failures if isinstance(e, PopulatorFailure)), failures[0])
            raise first

    def stop(self) -> None:
        """Readers finish the range they are on and quit (then ``run`` raises)."""
        self._stop.set()

    def _next(self) -> tuple[int, int] | None:
        with self._lock:
            if self._stop.is_set():
                return None
            return next(self._work, None)

    def _reader(self) -> None:
        reader = self.source.reader()
        buf = aligned_buffer(CHUNK)
        view = memoryview(buf)
        try:
            item, asked = self._next(), False
            while item is not None and not self._stop.is_set():
                then = self._next()
                offset, length = item
                asked = self._copy_chunk(reader, view[:length], offset, asked, then)
                item = then
        except BaseException:
            self._stop.set()
            raise
        finally:
            reader.close()
            with contextlib.suppress(BufferError):  # a traceback may still hold a slice
                view.release()
                buf.close()

    def _copy_chunk(
        self,
        reader: Reader,
        view: memoryview,
        offset: int,
        asked: bool,
        then: tuple[int, int] | None,
    ) -> bool:
        """Read one chunk (already requested if ``asked``), request ``then`` before taking
        this chunk's bytes (pipelined: imageio prepares it while we write this one), write.
        Returns whether ``then`` was requested on the connection that is still open."""

        def once() -> bool:
            nonlocal asked
            then_asked = False
            try:
                if not asked:
                    reader.ask(offset, len(view))
                if then is not None:
                    reader.ask(*then)
                    then_asked = True
                reader.receive_into(offset, view)
            except Transient:
                asked = False  # the reader closed its connection: every request is lost
                raise
            self._last_activity = time.monotonic()
            return then_asked

        then_asked = retrying(
            once,
            f"bytes at {offset}",
            f"reading bytes {offset}-{offset + len(view) - 1}",
            stopped=self._stop.is_set,
            on_retry=self._count_retry,
        )
        self.volume.write(view, offset)
        self.progress.add(len(view))
        return then_asked

    def _count_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def keepalive(self) -> None:
        """A tiny read, so imageio and the engine see activity on an idle transfer; retried
        in place like a range read, and only logged when every attempt failed."""
        reader = self.source.reader()
        buf = bytearray(512)

        def once() -> None:
            reader.read_into(0, memoryview(buf))

        try:
            retrying(once, "the keep-alive read", "the keep-alive read")
            self._last_activity = time.monotonic()
        except PopulatorFailure as exc:
            if not isinstance(exc.__cause__, Transient):  # 403, TLS: not worth retrying
                raise
            log.info("keep-alive read failed: %s", exc)
        finally:
            reader.close()
