"""What maps say, resolved against the inventory: source references to ids, destinations
to what the target cluster has.

A map names sources by id or name (ids found, names looked up, ambiguity refused) and
destinations by name: a Multus network must exist, a storage class must exist and be
dynamically provisioned or static (its Available PersistentVolumes are then what it can
give: ``staticvolumes``), its volume and access modes come from the map or from CDI's
StorageProfile (an empty profile is an error, never a guess; a static class's volumes
say theirs), and CSIStorageCapacity tells the largest volume it can hold.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from services.planner import shaping
from services.planner.inventoryclient import InventoryClient, Obj
from services.planner.problems import Problem, Result
from services.planner.staticvolumes import Pool
from shared.payloads import ProviderType

NO_PROVISIONER = "kubernetes.io/no-provisioner"


@dataclass
class Target:
    namespaces: dict[str, Obj]
    classes: dict[str, Obj]
    profiles: dict[str, Obj]
    nads: dict[str, Obj]
    capacities: list[Obj]
    vms: list[Obj]
    pvcs: list[Obj]
    volumes: list[Obj] = field(default_factory=list)
    pools: dict[str, Pool] = field(default_factory=dict)

    def pool(self, storage_class: str) -> Pool:
        """One pool per static class for the whole plan: two map entries onto one class
        share its volumes."""
        if storage_class not in self.pools:
            self.pools[storage_class] = Pool.of(storage_class, self.volumes)
        return self.pools[storage_class]


@dataclass(frozen=True)
class Storage:
    storage_class: str
    volume_mode: str
    access_mode: str
    limit: int | None  # largest claim the class can provision, if known
    pool: Pool | None = field(default=None, compare=False)  # a static class's volumes


async def load_target(inv: InventoryClient, tid: str, ns: str) -> Target:
    n, c, p, nads, cap, vms, pvcs, pvs = await asyncio.gather(
        inv.list(tid, "namespaces"),
        inv.list(tid, "storageclasses"),
        inv.list(tid, "storageprofiles"),
        inv.list(tid, "networkattachmentdefinitions"),
        inv.list(tid, "storagecapacities"),
        inv.list(tid, "virtualmachines", parent=ns),
        inv.list(tid, "persistentvolumeclaims", parent=ns),
        inv.list(tid, "persistentvolumes"),
    )
    return Target(
        namespaces={o["id"]: o for o in n},
        classes={o["id"]: o for o in c},
        profiles={o["parent"] or o["id"]: o for o in p},
        nads={o["id"]: o for o in nads},
        capacities=cap,
        vms=vms,
        pvcs=pvcs,
        volumes=pvs,
    )


def nad_id(ref: str, default_ns: str) -> str:
    return ref if "/" in ref else f"{default_ns}/{ref}"


async def _resolve_sources(
    inv: InventoryClient,
    res: Result,
    path: str,
    provider_id: str,
    collection: str,
    entries: list[dict[str, Any]],
) -> dict[int, list[str]]:
    """Entry index -> the keys (id and name) a source object answers to; missing or
    ambiguous references are problems."""
    objects = await inv.list(provider_id, collection)
    by_id = {o["id"]: o for o in objects}
    by_name: dict[str, list[Obj]] = {}
    for o in objects:
        by_name.setdefault(o["name"], []).append(o)
    out: dict[int, list[str]] = {}
    for i, e in enumerate(entries):
        src = e["source"]
        if src.get("type") == shaping.GLANCE:
            out[i] = [shaping.GLANCE]
            continue
        if src.get("id") is not None:
            found = [by_id[src["id"]]] if src["id"] in by_id else []
        else:
            found = by_name.get(src["name"], [])
        where = f"{path}.entries[{i}].source"
        if not found:
            res.add(where, "SourceNotFound", _gone(collection, src), res.missing_source)
            continue
        if len(found) > 1:
            res.add(
                where,
                "SourceAmbiguous",
                f"{len(found)} {collection} are named {src['name']!r}; refer to one by id",
            )
            continue
        o = found[0]
        out[i] = [o["id"], o["name"]]
    return out


def _gone(collection: str, src: dict[str, Any]) -> str:
    ref = f"id {src['id']!r}" if src.get("id") else f"name {src['name']!r}"
    return f"the source provider has no {collection[:-1]} with {ref}"


async def network_destinations(
    inv: InventoryClient,
    res: Result,
    entries: list[dict[str, Any]],
    namespace: str,
    sid: str,
    tgt: Target,
) -> dict[str, str]:
    """Source network key -> 'pod', 'ignored' or 'namespace/name' (a Multus network with no
    namespace is in ``namespace``, the plan's)."""
    keys = await _resolve_sources(inv, res, "networkMap", sid, "networks", entries)
    out: dict[str, str] = {}
    for i, e in enumerate(entries):
        dest = e["destination"]
        target = dest["type"]
        if target == "multus":
            target = nad_id(f"{dest.get('namespace') or namespace}/{dest['name']}", "")
            if target not in tgt.nads:
                problem = Problem(
                    f"networkMap.entries[{i}].destination",
                    "NetworkAttachmentDefinitionNotFound",
                    f"no NetworkAttachmentDefinition {target} in the target cluster",
                )
                for k in keys.get(i, []):
                    res.deferred.setdefault(("network", k), []).append(problem)
        for k in keys.get(i, []):
            out[k] = target
    return out


async def storage_destinations(
    inv: InventoryClient,
    res: Result,
    entries: list[dict[str, Any]],
    ptype: ProviderType,
    sid: str,
    tgt: Target,
) -> dict[str, Storage]:
    collection = "volumetypes" if ptype is ProviderType.OPENSTACK else "storagedomains"
    for i, e in enumerate(entries):
        if e["source"].get("type") == shaping.GLANCE and ptype is not ProviderType.OPENSTACK:
            res.add(
                f"storageMap.entries[{i}].source",
                "SourceInvalid",
                "`type: glance` maps the root disks of image-backed OpenStack servers only",
            )
    keys = await _resolve_sources(inv, res, "storageMap", sid, collection, entries)
    out: dict[str, Storage] = {}
    for i, e in enumerate(entries):
        found = Result()
        storage = _storage_of(found, f"storageMap.entries[{i}].destination", e["destination"], tgt)
        for k in keys.get(i, []):
            if storage is not None:
                out[k] = storage
            res.deferred.setdefault(("storage", k), []).extend(found.problems)
    return out


def _storage_of(res: Result, path: str, dest: dict[str, Any], tgt: Target) -> Storage | None:
    name = dest.get("storageClass", "")
    cls = tgt.classes.get(name) if name else None
    if name and cls is None:
        res.add(path, "StorageClassNotFound", f"no StorageClass {name!r} in the target cluster")
        return None
    if cls is None or (cls.get("data") or {}).get("provisioner") == NO_PROVISIONER:
        return _static(res, path, dest, tgt, name)
    volume_mode, access_mode = dest.get("volumeMode"), dest.get("accessMode")
    if volume_mode is None or access_mode is None:
        profile = tgt.profiles.get(name)
        sets = ((profile or {}).get("data") or {}).get("claimPropertySets") or []
        if profile is None:
            res.add(
                path,
                "StorageProfileNotFound",
                f"no StorageProfile for {name!r} (is CDI installed?): set volumeMode and "
                "accessMode in the storage map",
            )
            return None
        if not sets:
            res.add(
                path,
                "StorageProfileEmpty",
                f"the StorageProfile of {name!r} has no claimPropertySets: Hoist does not "
                "guess; set them in the profile or volumeMode and accessMode in the map",
            )
            return None
        chosen = _preferred(sets)
        volume_mode = volume_mode or chosen["volumeMode"] or "Filesystem"
        access_mode = access_mode or chosen["accessModes"][0]
    return Storage(name, volume_mode, access_mode, _limit(name, tgt.capacities))


def _static(res: Result, path: str, dest: dict[str, Any], tgt: Target, name: str) -> Storage | None:
    """A class of pre-made volumes: its modes are the map's, else those its Available
    volumes offer; each disk is given one of them in ``validating`` (``Pool``)."""
    pool = tgt.pool(name)
    volume_mode, access_mode = dest.get("volumeMode"), dest.get("accessMode")
    if volume_mode is None or access_mode is None:
        offered = pool.modes()
        if offered is None:
            what = f"StorageClass {name!r}" if name else 'storageClass ""'
            res.add(
                path,
                "StaticVolumesMissing",
                f"{what} has no dynamic provisioner and no Available PersistentVolume: "
                "create the volumes the plan's disks need (or set volumeMode and "
                "accessMode in the map), or use a dynamically provisioning class",
            )
            return None
        volume_mode = volume_mode or offered[0]
        access_mode = access_mode or offered[1]
    return Storage(name, volume_mode, access_mode, None, pool)


def _preferred(sets: list[dict[str, Any]]) -> dict[str, Any]:
    """Block over Filesystem, then ReadWriteMany over the rest (live migration needs RWX)."""
    usable = [s for s in sets if s.get("accessModes")] or sets

    def rank(s: dict[str, Any]) -> tuple[int, int]:
        return (s.get("volumeMode") == "Block", "ReadWriteMany" in s.get("accessModes", []))

    best = max(usable, key=rank)
    modes = best.get("accessModes") or ["ReadWriteOnce"]
    if "ReadWriteMany" in modes:
        modes = ["ReadWriteMany"]
    return {"volumeMode": best.get("volumeMode"), "accessModes": modes}


def _limit(storage_class: str, capacities: list[Obj]) -> int | None:
    """The largest volume the class can provision, from CSIStorageCapacity objects: a
    volume lives in one topology segment, so the largest segment bounds it."""
    best: int | None = None
    for c in capacities:
        data = c.get("data") or {}
        if data.get("storageClassName") != storage_class:
            continue
        values = [v for v in (data.get("capacity"), data.get("maximumVolumeSize")) if v is not None]
        if values:
            segment = min(int(v) for v in values)
            best = segment if best is None else max(best, segment)
    return best


async def validate_map(
    inv: InventoryClient, kind: str, source: Obj, target: Obj, entries: list[dict[str, Any]]
) -> list[Problem]:
    """A map's problems on its own: sources that do not exist, destinations the target
    lacks. (A Multus network without a namespace is checked per plan, in its namespace.)"""
    res = Result()
    ptype = ProviderType(source["type"])
    path = f"{kind}Map"
    if kind == "network":
        keys, nads = await asyncio.gather(
            _resolve_sources(inv, res, path, source["id"], "networks", entries),
            inv.list(target["id"], "networkattachmentdefinitions"),
        )
        known = {o["id"] for o in nads}
        for i, e in enumerate(entries):
            dest = e["destination"]
            if dest["type"] == "multus" and dest.get("namespace"):
                nad = f"{dest['namespace']}/{dest['name']}"
                if nad not in known:
                    res.add(
                        f"{path}.entries[{i}].destination",
                        "NetworkAttachmentDefinitionNotFound",
                        f"no NetworkAttachmentDefinition {nad} in the target cluster",
                    )
        del keys
        return res.problems
    c, p, cap, pvs = await asyncio.gather(
        inv.list(target["id"], "storageclasses"),
        inv.list(target["id"], "storageprofiles"),
        inv.list(target["id"], "storagecapacities"),
        inv.list(target["id"], "persistentvolumes"),
    )
    tgt = Target(
        namespaces={},
        classes={o["id"]: o for o in c},
        profiles={o["parent"] or o["id"]: o for o in p},
        nads={},
        capacities=cap,
        vms=[],
        pvcs=[],
        volumes=pvs,
    )
    await storage_destinations(inv, res, entries, ptype, source["id"], tgt)
    for kind, key in list(res.deferred):  # on its own, a map's every entry counts
        res.use(kind, key)
    return res.problems
