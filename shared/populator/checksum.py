"""The block checksum of a copied disk: what a populator reports, and how it is computed.

ovirt-imageio's checksum (``GET /images/<ticket>/checksum``, its ``blkhash``): the disk's
guest bytes cut into ``block_size`` blocks (the last one may be shorter), each block hashed
alone, and the outer hash taken over the blocks' digests in order. Blocks may be hashed in
any order and zero blocks need no reading (one precomputed digest), which is what lets the
oVirt populator hash each block in the reader thread that wrote it. blake2b and blake2s
digests are 32 bytes, as imageio makes them; every other algorithm has its own size.

Who uses it: the oVirt populator computes it over what it writes and, when imageio offers
the checksum, compares it with imageio's (``verified``); it reports the result in its
termination message (``StageResult.checksum``). The controller copies it onto the volume
(``CHECKSUM_ANNOTATION`` on the PersistentVolume, beside ``POPULATED_FROM``), where it stays
with the data; ``make demo`` compares it with its own computation of the source disk.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from shared.populator.kinds import PREFIX

CHECKSUM_ANNOTATION = f"{PREFIX}checksum"
"""On a populated PersistentVolume: ``BlockChecksum.text()`` of the data the pod wrote."""

BLOCK_SIZE = 1 << 20
"""imageio's smallest block size (its default is 4 MiB). Small blocks hash less: a block
holding some data is hashed whole, zeros included, so 1 MiB blocks over a disk of scattered
1 MiB extents hash its data once, 4 MiB blocks up to four times."""
PREFERRED = ("sha256", "blake2b")
"""Asked in this order among what imageio offers: SHA-256 runs on SHA-NI where the CPU has it
(~0.7 CPU-s per GiB on the development VMs against blake2b's ~1.7, Python's blake2b has no
SIMD code), and is as good at catching corruption. blake2b is imageio's default."""
_DIGEST_SIZE = 32  # imageio's for blake2b and blake2s


def new_hash(algorithm: str, data: bytes | bytearray | memoryview = b"") -> Any:
    """A hashlib object as imageio's blkhash makes it."""
    if algorithm == "blake2b":
        return hashlib.blake2b(data, digest_size=_DIGEST_SIZE)
    if algorithm == "blake2s":
        return hashlib.blake2s(data, digest_size=_DIGEST_SIZE)
    return hashlib.new(algorithm, data)


@dataclass(frozen=True)
class BlockChecksum:
    """A disk's block checksum, and whether the source computed the same one."""

    algorithm: str
    block_size: int
    value: str
    """Hex digest."""
    verified: bool
    """The source (imageio) computed it too and the two were equal; False: only the
    populator computed it (the source offers no checksum), for others to compare."""

    def text(self) -> str:
        """``<algorithm>:<block size>:<hex>:verified|reported`` (an annotation's value)."""
        how = "verified" if self.verified else "reported"
        return f"{self.algorithm}:{self.block_size}:{self.value}:{how}"

    @classmethod
    def parse(cls, text: str) -> BlockChecksum | None:
        """None for anything that is not ``text()``'s form."""
        parts = str(text or "").split(":")
        if len(parts) != 4 or parts[3] not in ("verified", "reported"):
            return None
        try:
            block_size = int(parts[1])
        except ValueError:
            return None
        if not parts[0] or block_size <= 0 or not parts[2]:
            return None
        return cls(parts[0], block_size, parts[2].lower(), parts[3] == "verified")

    def to_dict(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "blockSize": self.block_size,
            "value": self.value,
            "verified": self.verified,
        }

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> BlockChecksum:
        """``ValueError`` for a document that is not ``to_dict()``'s."""
        try:
            out = cls(
                str(doc["algorithm"]),
                int(doc["blockSize"]),
                str(doc["value"]).lower(),
                bool(doc["verified"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a block checksum: {doc!r}") from exc
        if not out.algorithm or out.block_size <= 0 or not out.value:
            raise ValueError(f"not a block checksum: {doc!r}")
        return out


def data_blocks(ranges: Iterable[tuple[int, int]], block_size: int) -> Iterator[int]:
    """The indices of the blocks that ``ranges`` (sorted ``(offset, length)`` of data)
    touch, in order, each once."""
    last = -1
    for offset, length in ranges:
        if length <= 0:
            continue
        first = max(offset // block_size, last + 1)
        end = (offset + length - 1) // block_size
        yield from range(first, end + 1)
        last = max(last, end)


class BlockHash:
    """The outer hash, fed block digests in any order (thread-safe).

    ``blocks`` names, in order, the blocks that may hold data; every other block is zeros
    and is folded in with the precomputed zero digest. Digests that arrive ahead of their
    turn wait in a dict (the readers work through the disk in order, so few wait)."""

    def __init__(self, algorithm: str, block_size: int, size: int, blocks: Iterable[int]) -> None:
        self.algorithm = algorithm
        self.block_size = block_size
        self.size = size
        self.count = (size + block_size - 1) // block_size
        self._outer = new_hash(algorithm)
        self._zero = new_hash(algorithm, bytes(block_size)).digest()
        tail = size % block_size
        self._last_zero = new_hash(algorithm, bytes(tail)).digest() if tail else self._zero
        self._blocks = iter(blocks)
        self._upcoming: int | None = next(self._blocks, None)
        self._next = 0
        self._pending: dict[int, bytes] = {}
        self._lock = threading.Lock()

    def digest_of(self, data: bytes | bytearray | memoryview) -> bytes:
        """One block's digest (hashlib releases the GIL on large buffers)."""
        return bytes(new_hash(self.algorithm, data).digest())

    def add(self, index: int, digest: bytes) -> None:
        with self._lock:
            self._pending[index] = digest
            self._fold()

    def _zeros(self, until: int) -> None:
        """Fold the zero blocks from ``_next`` up to ``until`` (exclusive)."""
        if until >= self.count and self._next < self.count:
            full = self.count - 1 - self._next
            self._repeat(self._zero, full)
            self._outer.update(self._last_zero)
        else:
            self._repeat(self._zero, until - self._next)
        self._next = max(self._next, min(until, self.count))

    def _repeat(self, digest: bytes, n: int) -> None:
        run = digest * 1024
        while n > 0:
            k = min(n, 1024)
            self._outer.update(run[: k * len(digest)])
            n -= k

    def _fold(self) -> None:
        while self._upcoming is not None:
            if self._next < self._upcoming:
                self._zeros(self._upcoming)
            got = self._pending.pop(self._upcoming, None)
            if got is None:
                return
            self._outer.update(got)
            self._next += 1
            self._upcoming = next(self._blocks, None)

    def hexdigest(self) -> str:
        """The checksum, once every data block was added (``ValueError`` otherwise)."""
        with self._lock:
            self._fold()
            if self._upcoming is not None:
                raise ValueError(f"block {self._upcoming} of {self.count} was never hashed")
            self._zeros(self.count)
            return str(self._outer.hexdigest())
