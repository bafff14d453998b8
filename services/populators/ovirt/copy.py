"""The copy: data extents read by parallel range readers, written where they belong.

Why this shape: the imageio daemon serves several connections per ticket
(``max_readers``), TLS and the kernel's copy dominate the client's CPU, and page-cache
writes cost as much as the download on small VMs. So: up to ``min(max_readers, 4)``
threads (one when the ranges are small: ``readers_for``), each with one keep-alive
connection and one reused page-aligned buffer, take the next unit (an aligned 8 MiB
window of the disk and its data ranges: ``units``), read each range straight into its
place in the buffer and ``pwrite`` it (O_DIRECT when the volume allows), then hash the
window's blocks for the copy's checksum (``hash_unit``, ``verify``). Zero
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
from dataclasses import dataclass

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
from shared.populator.checksum import BlockHash

log = logging.getLogger("populator")

CHUNK = 8 << 20  # 4 MiB cost ~7% more CPU per GiB (more requests and writes)
MAX_READERS = 4
SMALL_RANGES_READERS = 1
SMALL_RANGE = 4 << 20


@dataclass(frozen=True)
class Unit:
    """One reader's turn: a ``CHUNK``-aligned window of the disk and its data ranges
    (absolute offsets), each read with its own range request into the window's buffer."""

    start: int
    length: int
    pieces: tuple[tuple[int, int], ...]


def units(extents: list[Extent], size: int = CHUNK) -> Iterator[Unit]:
    """The data extents cut at ``size``-aligned windows. Aligned windows keep every
    checksum block (a divisor of ``size``) inside one unit, so the reader that holds its
    bytes can hash it; a window's pieces are the data ranges that fall in it."""
    window = -1
    pieces: list[tuple[int, int]] = []
    for e in extents:
        if e.zero:
            continue
        pos, end = e.start, e.start + e.length
        while pos < end:
            w = pos // size
            n = min(end, (w + 1) * size) - pos
            if w != window and pieces:
                yield _unit(window, size, pieces)
                pieces = []
            window = w
            pieces.append((pos, n))
            pos += n
    if pieces:
        yield _unit(window, size, pieces)


def _unit(window: int, size: int, pieces: list[tuple[int, int]]) -> Unit:
    start = window * size
    end = max(offset + n for offset, n in pieces)
    return Unit(start, end - start, tuple(pieces))


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
    spans = [n for u in units(extents) for _, n in u.pieces]
    if not spans:
        return 1
    mean = sum(spans) / len(spans)
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
        hasher: BlockHash | None = None,
    ) -> None:
        self.source = source
        self.volume = volume
        self.progress = progress
        # A later stage's zeroing is real work on a volume holding data, so it counts;
        # a fresh volume's holes cost nothing and the cold copy's percent is data only.
        self.count_zeros = count_zeros
        self.readers = max(1, readers)
        # Each block is hashed by the reader that wrote it, from its buffer, right after
        # the write: no second pass over the volume (see populate.verify for why).
        self.hasher = hasher
        self.retries = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._work: Iterator[Unit] = iter(())
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
        self._work = units(extents)
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

    def _next(self) -> Unit | None:
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
                asked = self._copy_unit(reader, view, item, asked, then)
                item = then
        except BaseException:
            self._stop.set()
            raise
        finally:
            reader.close()
            with contextlib.suppress(BufferError):  # a traceback may still hold a slice
                view.release()
                buf.close()

    def _copy_unit(
        self,
        reader: Reader,
        view: memoryview,
        unit: Unit,
        asked: bool,
        then: Unit | None,
    ) -> bool:
        """Read one unit's ranges (already requested if ``asked``), request ``then``'s
        before taking this unit's bytes (pipelined: imageio prepares them while we write
        these), write each range as it arrives, then hash the unit's blocks. Returns whether
        ``then`` was requested on the connection that is still open."""
        pieces = unit.pieces
        first, last = pieces[0][0], pieces[-1][0] + pieces[-1][1] - 1
        done = 0  # ranges received and written: a retry asks for the rest only

        def once() -> bool:
            nonlocal asked, done
            then_asked = False
            try:
                if not asked:
                    for offset, n in pieces[done:]:
                        reader.ask(offset, n)
                if then is not None:
                    for offset, n in then.pieces:
                        reader.ask(offset, n)
                    then_asked = True
                while done < len(pieces):
                    offset, n = pieces[done]
                    at = offset - unit.start
                    reader.receive_into(offset, view[at : at + n])
                    self._last_activity = time.monotonic()
                    self.volume.write(view[at : at + n], offset)
                    self.progress.add(n)
                    done += 1
            except Transient:
                asked = False  # the reader closed its connection: every request is lost
                raise
            return then_asked

        then_asked = retrying(
            once,
            f"bytes at {first}",
            f"reading bytes {first}-{last}",
            stopped=self._stop.is_set,
            on_retry=self._count_retry,
        )
        if self.hasher is not None:
            hash_unit(self.hasher, view, unit)
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


_ZEROS = memoryview(bytes(CHUNK))


def hash_unit(hasher: BlockHash, view: memoryview, unit: Unit) -> None:
    """Hash the blocks of ``unit`` that hold data, from the buffer the reader filled
    (``view`` starts at ``unit.start``). The gaps between its pieces are whatever an earlier
    unit left in the buffer: they are zeroed first, within the blocks hashed only."""
    size = hasher.block_size
    end = unit.start + unit.length
    pieces = unit.pieces
    i = 0
    for block in range(unit.start // size, (end + size - 1) // size):
        b_start = block * size
        b_end = min(b_start + size, hasher.size)
        pos, touched = b_start, False
        while i < len(pieces) and pieces[i][0] < b_end:
            offset, n = pieces[i]
            if offset + n <= b_start:
                i += 1
                continue
            touched = True
            if offset > pos:
                view[pos - unit.start : offset - unit.start] = _ZEROS[: offset - pos]
            pos = max(pos, min(offset + n, b_end))
            if offset + n > b_end:
                break  # the piece goes on in the next block
            i += 1
        if not touched:
            continue
        if pos < b_end:
            view[pos - unit.start : b_end - unit.start] = _ZEROS[: b_end - pos]
        hasher.add(block, hasher.digest_of(view[b_start - unit.start : b_end - unit.start]))
