"""Whether a plan's VMs can go warm: the source, its engine's version, each disk.

A warm migration copies the disks while the source VM runs, again every precopy interval,
and after the power-off only what changed since the last copy. That needs the source to
say which blocks changed, which oVirt does through incremental backup: it came with oVirt
4.4, and it covers only disks whose ``backup`` is ``incremental``. OpenStack has no such
thing here, so its VMs migrate cold only (as in Forklift).

Each reason is a problem of its own, at the field it is about (``migrationType``,
``sourceProvider``, ``vms[i].disks[j]``), so a user sees every disk to change at once
rather than one per attempt.
"""

from __future__ import annotations

import re
from typing import Any

from services.planner.problems import WARNING, Result
from services.planner.shaping import SourceDisk
from shared.payloads import ProviderType

#: The first oVirt release with incremental backup (changed-block tracking).
MIN_ENGINE = (4, 4)
INCREMENTAL = "incremental"

_LEADING_VERSION = re.compile(r"^\s*(\d+)\.(\d+)")


def engine_version(facts: dict[str, Any] | None) -> tuple[int, int] | None:
    """The engine's ``(major, minor)`` as the inventory saw it at connection: the numbers
    when it stored them, else the leading numbers of its version text (a provider
    connected by an older inventory has only that); None when neither is known."""
    facts = facts or {}
    numbers = facts.get("apiVersion")
    if isinstance(numbers, dict):
        major, minor = numbers.get("major"), numbers.get("minor")
        if isinstance(major, int) and isinstance(minor, int):
            return major, minor
    text = facts.get("version")
    match = _LEADING_VERSION.match(text) if isinstance(text, str) else None
    return (int(match.group(1)), int(match.group(2))) if match else None


def check_source(res: Result, source: dict[str, Any]) -> bool:
    """Report why the source provider cannot go warm; True when its disks are worth
    checking too (an oVirt source, whatever its version)."""
    name, ptype = source.get("name") or source["id"], source["type"]
    if ptype != ProviderType.OVIRT.value:
        res.add(
            "migrationType",
            "WarmSourceUnsupported",
            f"provider {name!r} is {ptype}: only oVirt sources can migrate warm (Hoist "
            f"cannot track which blocks of a {ptype} disk changed); use migrationType cold",
        )
        return False
    facts = (source.get("status") or {}).get("facts") or {}
    version = engine_version(facts)
    if version is None:
        res.add(
            "sourceProvider",
            "WarmEngineVersionUnknown",
            f"the inventory does not know which oVirt version provider {name!r} runs (it "
            "is read when the provider connects); warm migration needs oVirt "
            f"{MIN_ENGINE[0]}.{MIN_ENGINE[1]} or newer",
            WARNING,
        )
    elif version < MIN_ENGINE:
        shown = facts.get("version") or f"{version[0]}.{version[1]}"
        res.add(
            "sourceProvider",
            "WarmEngineTooOld",
            f"provider {name!r} runs oVirt {shown}; warm migration needs oVirt "
            f"{MIN_ENGINE[0]}.{MIN_ENGINE[1]} or newer (incremental backup came with "
            f"{MIN_ENGINE[0]}.{MIN_ENGINE[1]}): upgrade the engine or use migrationType cold",
        )
    return True


def check_disk(res: Result, path: str, vm_id: str, disk: SourceDisk) -> None:
    """Report a disk oVirt does not track changed blocks of (``path``: the disk's)."""
    if disk.backup == INCREMENTAL:
        return
    res.add(
        path,
        "DiskIncrementalBackupDisabled",
        f"disk {disk.name!r} does not have incremental backup enabled (backup: "
        f"{disk.backup or 'none'}): a warm migration copies only the blocks that changed "
        "since the last precopy, which oVirt tracks only for such disks; enable incremental "
        "backup on the disk (backup: incremental), or use migrationType cold",
        vm=vm_id,
    )
