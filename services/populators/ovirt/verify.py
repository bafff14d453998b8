"""The copy's checksum: imageio's block checksum of the whole disk, computed by the copy over
what it writes and, when imageio offers its checksum API, by imageio over the source at the
same time. The two must be equal, or the pod fails.

* ``start`` (before the copy): the algorithm (``PREFERRED``, among
  ``/checksum/algorithms``), the ``BlockHash`` the readers feed, and imageio's own
  ``GET /checksum`` on a connection of its own, running while we copy (imageio reads the
  source again for it: on its side, not ours).
* ``finish`` (after the fsync): our digest against imageio's; equal: ``verified``. Unequal:
  a ``PopulatorFailure`` naming both digests. No checksum API (an older daemon or a proxy
  without it: 404/405, or no ``checksum`` among the OPTIONS ``features``), or imageio
  failing to compute it: the digest is reported unverified (``BlockChecksum.verified``
  False) for others to compare (``make demo`` does), and the log says why.

Why the blocks are hashed as they are written, from the reader's buffer, rather than by
reading the volume back afterwards: the read-back costs a second pass over the volume
(every byte of data crosses the storage network again on a network volume; with O_DIRECT
writes nothing is in the page cache) and a serial phase after the copy, on top of the same
hash CPU. Hashing the buffer that ``pwrite`` just took costs the hash alone, runs in the
reader threads (hashlib releases the GIL on large buffers) while the other readers' requests
are in flight, and covers the bytes exactly as handed to the volume; what the volume does
with them afterwards is the storage's to guarantee (and a failed write or fsync fails the
pod already).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.populators.common.failure import PopulatorFailure
from services.populators.ovirt.source import ChecksumUnavailable, ImageioSource, TicketGone
from services.populators.ovirt.stage import Plan
from shared.populator.checksum import (
    BLOCK_SIZE,
    PREFERRED,
    BlockChecksum,
    BlockHash,
    data_blocks,
)

log = logging.getLogger("populator")

SLOWEST = 10 << 20
"""Bytes of data per second imageio is given to checksum the source (a timeout only)."""


@dataclass
class Check:
    source: ImageioSource
    plan: Plan
    hasher: BlockHash
    why_unverified: str = ""
    """Why imageio's checksum is not asked ("" when it is)."""
    theirs: concurrent.futures.Future[str] = field(default_factory=concurrent.futures.Future)

    async def finish(self) -> BlockChecksum:
        """Our digest, compared with imageio's when there is one."""
        ours = await asyncio.to_thread(self.hasher.hexdigest)
        algorithm, size = self.hasher.algorithm, self.hasher.block_size
        why = self.why_unverified
        if not why:
            try:
                theirs = await asyncio.wrap_future(self.theirs)
            except TicketGone:
                raise
            except PopulatorFailure as exc:
                why = f"imageio's checksum failed: {exc}"
            else:
                if theirs != ours:
                    raise PopulatorFailure(
                        f"checksum mismatch: imageio computed {algorithm} (blocks of {size} "
                        f"bytes) {theirs} over the source at {self.source.url}, the "
                        f"{self.plan.data} bytes of data written hash to {ours}; the volume "
                        "is not a copy of the disk (the pod fails so the disk is copied again)"
                    )
                log.info("%s block checksum verified with imageio's: %s", algorithm, ours)
                return BlockChecksum(algorithm, size, ours, verified=True)
        log.info("%s block checksum %s reported, not verified: %s", algorithm, ours, why)
        return BlockChecksum(algorithm, size, ours, verified=False)


async def start(source: ImageioSource, plan: Plan, options: Mapping[str, object] | None) -> Check:
    """Choose the algorithm, make the hasher, ask imageio for its checksum (in a thread of
    its own: daemonic, so a failed copy never waits for imageio's answer)."""
    algorithm, why = await asyncio.to_thread(_choose, source, options)
    ranges = ((e.start, e.length) for e in plan.extents if not e.zero)
    hasher = BlockHash(algorithm, BLOCK_SIZE, plan.size, data_blocks(ranges, BLOCK_SIZE))
    check = Check(source, plan, hasher, why)
    if not why:
        timeout = 60.0 + plan.data / SLOWEST
        threading.Thread(
            target=_ask, args=(check, algorithm, timeout), name="checksum", daemon=True
        ).start()
    return check


def _ask(check: Check, algorithm: str, timeout: float) -> None:
    try:
        value = check.source.checksum(algorithm, BLOCK_SIZE, timeout)
    except BaseException as exc:  # delivered to whoever awaits it
        check.theirs.set_exception(exc)
    else:
        check.theirs.set_result(value)


def _choose(source: ImageioSource, options: Mapping[str, object] | None) -> tuple[str, str]:
    """(algorithm, why imageio's checksum cannot be had, "" when it can)."""
    features = (options or {}).get("features")
    if isinstance(features, list | tuple) and "checksum" not in features:
        return PREFERRED[0], f"imageio lists no checksum feature (features {list(features)})"
    try:
        offered = source.checksum_algorithms()
    except TicketGone:
        raise
    except ChecksumUnavailable as exc:
        return PREFERRED[0], f"imageio has no checksum API ({exc})"
    except PopulatorFailure as exc:
        return PREFERRED[0], f"imageio's checksum algorithms are unknown ({exc})"
    for algorithm in PREFERRED:
        if algorithm in offered:
            return algorithm, ""
    return PREFERRED[0], f"imageio offers none of {', '.join(PREFERRED)} ({offered})"
