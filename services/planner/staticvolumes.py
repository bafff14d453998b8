"""Static classes at plan validation: a disk mapped onto a class without a dynamic
provisioner (``kubernetes.io/no-provisioner``, or ``storageClassName: ""``) needs an
Available PersistentVolume of its own that fits, as the populator controller will pick it
(``shared.volumes``: class, volume mode, access mode, size; the smallest that fits).

The inventory collects the target's volumes (``persistentvolumes``: ``available``,
``capacityBytes``, modes, ``nodes``); a ``Pool`` per class hands them out to the plan's
disks one by one, so two disks never count the same volume, and a disk left without one
is a precise problem: what it needs, and what the class has.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.planner.inventoryclient import Obj


@dataclass
class Pool:
    """The Available volumes of one static class, not yet promised to a disk."""

    storage_class: str
    free: list[Obj] = field(default_factory=list)
    total: int = 0

    @classmethod
    def of(cls, storage_class: str, volumes: list[Obj]) -> Pool:
        free = [
            v
            for v in volumes
            if (v.get("data") or {}).get("available")
            and (v.get("data") or {}).get("storageClassName", "") == storage_class
        ]
        return cls(storage_class, free, len(free))

    def modes(self) -> tuple[str, str] | None:
        """The (volumeMode, accessMode) most of the Available volumes offer: a static
        class's volumes are what it can give, so a map without modes takes theirs."""
        counts: dict[tuple[str, str], int] = {}
        for v in self.free:
            data = v.get("data") or {}
            for mode in data.get("accessModes") or []:
                key = (str(data.get("volumeMode") or "Filesystem"), str(mode))
                counts[key] = counts.get(key, 0) + 1
        if not counts:
            return None
        return max(counts, key=lambda k: (counts[k], k[0] == "Block", k[1] == "ReadWriteMany"))

    def take(self, need: int, volume_mode: str, access_mode: str) -> str | None:
        """Promise the smallest fitting volume to a disk; None when none is left."""
        fitting = [
            v
            for v in self.free
            if int((v.get("data") or {}).get("capacityBytes") or 0) >= need
            and (v.get("data") or {}).get("volumeMode", "Filesystem") == volume_mode
            and access_mode in ((v.get("data") or {}).get("accessModes") or [])
        ]
        if not fitting:
            return None
        best = min(fitting, key=lambda v: (int(v["data"]["capacityBytes"]), str(v["id"])))
        self.free.remove(best)
        return str(best["id"])

    def missing(self, need: int, volume_mode: str, access_mode: str) -> str:
        what = (
            f'of class "{self.storage_class}"'
            if self.storage_class
            else 'without a class (storageClassName "")'
        )
        sizes = sorted(int((v.get("data") or {}).get("capacityBytes") or 0) for v in self.free)
        left = ", ".join(str(s) for s in sizes[:10]) + (", ..." if len(sizes) > 10 else "")
        return (
            f"no Available PersistentVolume {what} with >= {need} bytes, volumeMode "
            f"{volume_mode}, accessMode {access_mode} is left for it: the class has "
            f"{self.total} Available, {len(self.free)} not taken by the plan's other disks"
            + (f" (bytes: {left})" if sizes else "")
            + "; create one, or map the disk to a class with a dynamic provisioner"
        )
