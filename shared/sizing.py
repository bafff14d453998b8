"""How big a volume must be to hold a disk: one rule for the planner and the orchestrator.

A Filesystem-mode volume holds the disk as a file on a filesystem, which takes its own
share (metadata, journal, reserved blocks); a claim of exactly the disk's size is too small
once that is counted, a failure users keep hitting. Forklift reserves 10% (size / 0.9),
CDI 6% (size x 1.06); Hoist takes Forklift's, the safer. Block volumes hold the bytes raw.
Sizes round up to whole MiB, which every provisioner accepts.
"""

from __future__ import annotations

MIB = 1 << 20
GIB = 1 << 30
FILESYSTEM_OVERHEAD = 0.10


def round_up(size: int, unit: int = MIB) -> int:
    return -(-size // unit) * unit


def claim_bytes(disk_bytes: int, volume_mode: str, overhead: float = FILESYSTEM_OVERHEAD) -> int:
    """The storage request of a claim that must hold a disk of ``disk_bytes``."""
    if disk_bytes < 0:
        raise ValueError("a disk size is never negative")
    if volume_mode == "Block":
        return round_up(disk_bytes)
    if not 0 <= overhead < 1:
        raise ValueError("filesystem overhead is a fraction in [0, 1)")
    return round_up(int(-(-disk_bytes // (1 - overhead))) if overhead else disk_bytes)
