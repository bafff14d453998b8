"""Validating a plan against the inventory: every problem at once, each with a path and code.

Validation runs when a plan is written, when its providers change in the inventory, and
again at start (what was true an hour ago may not be now). It reads the inventory over HTTP
(``InventoryClient``), never raises for a problem in the plan, and returns:

- ``problems``: each ``{path, code, severity, message}`` (``vm`` when it is about one VM).
  ``error`` blocks a start; ``warning`` is shown and does not.
- when nothing is an error, the resolved plan: every VM with its disks (sizes, storage
  class, volume and access modes, PVC names) and NICs (target network), what ``start``
  freezes into the ``plan.started`` event.

Paths use the API's field names (``vms[3].disks[0]``, ``storageMap.entries[1]``), so a UI
can put each message next to the field it is about.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.planner import naming, shaping
from services.planner.inventoryclient import InventoryClient, Obj
from shared import labels
from shared.payloads import (
    MigrationType,
    PlannedDisk,
    PlannedNic,
    PlannedVm,
    ProviderPhase,
    ProviderRef,
    ProviderType,
    ResourceRef,
)
from shared.sizing import claim_bytes

ERROR = "error"
WARNING = "warning"
NO_PROVISIONER = "kubernetes.io/no-provisioner"
SOURCE_TYPES = (ProviderType.OVIRT, ProviderType.OPENSTACK)


@dataclass(frozen=True)
class Problem:
    path: str
    code: str
    message: str
    severity: str = ERROR
    vm: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"path": self.path, "code": self.code, "severity": self.severity}
        out["message"] = self.message
        if self.vm is not None:
            out["vm"] = self.vm
        return out


@dataclass
class PlanInput:
    """What validation needs of a plan (from its row, or a create/update before writing)."""

    id: str
    name: str
    source_provider: str
    target_provider: str
    target_namespace: str
    migration_type: str
    transfer_network: str | None
    naming: dict[str, str]
    vms: list[dict[str, Any]]  # [{id, name?, targetName?}]
    network_map: dict[str, Any]  # the map rows
    storage_map: dict[str, Any]
    #: VMs an earlier migration of this plan migrated: not validated, not migrated again.
    done: frozenset[str] = frozenset()
    #: Target VM names other plans hold in the same namespace (name -> plan name).
    taken: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    problems: list[Problem] = field(default_factory=list)
    vms: list[PlannedVm] = field(default_factory=list)
    source: ProviderRef | None = None
    target: ProviderRef | None = None
    #: Names of the VMs found in the inventory (id -> name), for display.
    names: dict[str, str] = field(default_factory=dict)
    #: Problems of map entries, reported only if a VM of the plan uses the entry (a map
    #: serves many plans; an entry another plan needs must not block this one).
    deferred: dict[tuple[str, str], list[Problem]] = field(default_factory=dict)
    #: Severity of a map entry whose source does not exist (a plan: harmless, a warning).
    missing_source: str = ERROR

    def use(self, kind: str, key: str) -> bool:
        """Report the deferred problems of the entry ``key`` maps through; True if any."""
        found = self.deferred.get((kind, key), [])
        for p in found:
            if p not in self.problems:
                self.problems.append(p)
        return bool(found)

    @property
    def ok(self) -> bool:
        return not any(p.severity == ERROR for p in self.problems)

    def add(
        self, path: str, code: str, message: str, severity: str = ERROR, vm: str | None = None
    ) -> None:
        self.problems.append(Problem(path, code, message, severity, vm))


@dataclass
class _Target:
    namespaces: dict[str, Obj]
    classes: dict[str, Obj]
    profiles: dict[str, Obj]
    nads: dict[str, Obj]
    capacities: list[Obj]
    vms: list[Obj]
    pvcs: list[Obj]


@dataclass(frozen=True)
class _Storage:
    storage_class: str
    volume_mode: str
    access_mode: str
    limit: int | None  # largest claim the class can provision, if known


def provider_ref(p: Obj) -> ProviderRef:
    tls = p.get("tls") or {}
    return ProviderRef(
        id=p["id"],
        type=ProviderType(p["type"]),
        url=p.get("url") or "",
        secret=ResourceRef(**p["secret"]),
        tls_fingerprint_sha256=tls.get("fingerprint"),
    )


async def validate(inv: InventoryClient, plan: PlanInput) -> Result:
    res = Result()
    if plan.migration_type == MigrationType.WARM.value:
        res.add(
            "migrationType",
            "WarmNotSupported",
            "warm migration is not available yet: use migrationType cold (the source VM is "
            "powered off while its disks are copied)",
        )
    source, target = await asyncio.gather(
        inv.provider(plan.source_provider), inv.provider(plan.target_provider)
    )
    _check_provider(res, "sourceProvider", source, SOURCE_TYPES)
    _check_provider(res, "targetProvider", target, (ProviderType.KUBEVIRT,))
    for path, m in (("networkMap", plan.network_map), ("storageMap", plan.storage_map)):
        if (m["source_provider"], m["target_provider"]) != (
            plan.source_provider,
            plan.target_provider,
        ):
            res.add(
                path,
                "MapProvidersMismatch",
                f"map {m['name']!r} maps other providers than the plan's",
            )
    if (
        source is None
        or target is None
        or any(p.path in ("sourceProvider", "targetProvider") for p in res.problems)
    ):
        return res  # without both providers nothing else can be checked
    res.source, res.target = provider_ref(source), provider_ref(target)
    res.missing_source = WARNING
    ptype = ProviderType(source["type"])
    sid, tid = source["id"], target["id"]
    tgt, vms = await asyncio.gather(
        _load_target(inv, tid, plan.target_namespace),
        inv.objects(sid, "vms", [v["id"] for v in plan.vms if v.get("id")]),
    )
    ns = tgt.namespaces.get(plan.target_namespace)
    if ns is None:
        res.add("targetNamespace", "NamespaceNotFound", _missing_ns(plan.target_namespace))
    elif ns.get("status") == "Terminating":
        res.add("targetNamespace", "NamespaceTerminating", "the namespace is being deleted")
    networks = await _network_destinations(inv, res, plan, sid, tgt)
    storages = await _storage_destinations(inv, res, plan, ptype, sid, tgt)
    if plan.transfer_network:
        nad = _nad_id(plan.transfer_network, plan.target_namespace)
        if nad not in tgt.nads:
            res.add(
                "transferNetwork",
                "NetworkAttachmentDefinitionNotFound",
                f"no NetworkAttachmentDefinition {nad} in the target cluster",
            )
    _check_vms(res, plan, ptype, vms, networks, storages, tgt)
    return res


def _missing_ns(ns: str) -> str:
    return f"namespace {ns!r} does not exist in the target cluster; create it first"


def _check_provider(res: Result, path: str, p: Obj | None, types: Sequence[ProviderType]) -> None:
    if p is None:
        res.add(path, "ProviderNotFound", "no such provider in the inventory")
        return
    if p["type"] not in [t.value for t in types]:
        allowed = " or ".join(t.value for t in types)
        res.add(path, "ProviderTypeInvalid", f"provider {p['name']!r} is {p['type']}: {allowed}")
        return
    phase = p["status"]["phase"]
    if phase != ProviderPhase.READY.value:
        conds = p["status"].get("conditions") or []
        why = "; ".join(c.get("message", "") for c in conds if c.get("message"))
        res.add(
            path,
            "ProviderNotReady",
            f"provider {p['name']!r} is {phase}{': ' + why if why else ''}; the plan is "
            "validated again when it changes",
        )


async def _load_target(inv: InventoryClient, tid: str, ns: str) -> _Target:
    n, c, p, nads, cap, vms, pvcs = await asyncio.gather(
        inv.list(tid, "namespaces"),
        inv.list(tid, "storageclasses"),
        inv.list(tid, "storageprofiles"),
        inv.list(tid, "networkattachmentdefinitions"),
        inv.list(tid, "storagecapacities"),
        inv.list(tid, "virtualmachines", parent=ns),
        inv.list(tid, "persistentvolumeclaims", parent=ns),
    )
    return _Target(
        namespaces={o["id"]: o for o in n},
        classes={o["id"]: o for o in c},
        profiles={o["parent"] or o["id"]: o for o in p},
        nads={o["id"]: o for o in nads},
        capacities=cap,
        vms=vms,
        pvcs=pvcs,
    )


def _nad_id(ref: str, default_ns: str) -> str:
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
            one = by_id.get(src["id"])
            if one is None:
                res.add(
                    f"{path}.entries[{i}].source",
                    "SourceNotFound",
                    _gone(collection, src),
                    res.missing_source,
                )
                continue
            o = one
        else:
            found = by_name.get(src["name"], [])
            if not found:
                res.add(
                    f"{path}.entries[{i}].source",
                    "SourceNotFound",
                    _gone(collection, src),
                    res.missing_source,
                )
                continue
            if len(found) > 1:
                res.add(
                    f"{path}.entries[{i}].source",
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


async def _network_destinations(
    inv: InventoryClient, res: Result, plan: PlanInput, sid: str, tgt: _Target
) -> dict[str, str]:
    """Source network key -> 'pod', 'ignored' or 'namespace/name'."""
    entries = plan.network_map["entries"]
    keys = await _resolve_sources(inv, res, "networkMap", sid, "networks", entries)
    out: dict[str, str] = {}
    for i, e in enumerate(entries):
        dest = e["destination"]
        target = dest["type"]
        if target == "multus":
            target = _nad_id(f"{dest.get('namespace') or plan.target_namespace}/{dest['name']}", "")
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


async def _storage_destinations(
    inv: InventoryClient, res: Result, plan: PlanInput, ptype: ProviderType, sid: str, tgt: _Target
) -> dict[str, _Storage]:
    entries = plan.storage_map["entries"]
    collection = "volumetypes" if ptype is ProviderType.OPENSTACK else "storagedomains"
    for i, e in enumerate(entries):
        if e["source"].get("type") == shaping.GLANCE and ptype is not ProviderType.OPENSTACK:
            res.add(
                f"storageMap.entries[{i}].source",
                "SourceInvalid",
                "`type: glance` maps the root disks of image-backed OpenStack servers only",
            )
    keys = await _resolve_sources(inv, res, "storageMap", sid, collection, entries)
    out: dict[str, _Storage] = {}
    for i, e in enumerate(entries):
        found = Result()
        storage = _storage_of(found, f"storageMap.entries[{i}].destination", e["destination"], tgt)
        for k in keys.get(i, []):
            if storage is not None:
                out[k] = storage
            res.deferred.setdefault(("storage", k), []).extend(found.problems)
    return out


def _storage_of(res: Result, path: str, dest: dict[str, Any], tgt: _Target) -> _Storage | None:
    name = dest.get("storageClass", "")
    if not name:
        res.add(
            path,
            "StorageClassStatic",
            'storageClass "" means static provisioning, which populators cannot fill safely '
            "(a claim may bind to an empty pre-made volume and be reported populated); "
            "use a dynamically provisioning class",
        )
        return None
    cls = tgt.classes.get(name)
    if cls is None:
        res.add(path, "StorageClassNotFound", f"no StorageClass {name!r} in the target cluster")
        return None
    if (cls.get("data") or {}).get("provisioner") == NO_PROVISIONER:
        res.add(
            path,
            "StorageClassNoProvisioner",
            f"StorageClass {name!r} uses {NO_PROVISIONER}: its volumes are made by hand, "
            "and a populator's claim would wait forever or bind to an empty volume; use a "
            "dynamically provisioning class",
        )
        return None
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
    return _Storage(name, volume_mode, access_mode, _limit(name, tgt.capacities))


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


def _check_vms(
    res: Result,
    plan: PlanInput,
    ptype: ProviderType,
    found: dict[str, Obj],
    networks: dict[str, str],
    storages: dict[str, _Storage],
    tgt: _Target,
) -> None:
    vm_names = naming.Names()
    pvc_names = naming.Names()
    template_vm = plan.naming.get("vm") or naming.DEFAULT_VM
    existing_vms = {o["name"]: o for o in tgt.vms}
    existing_pvcs = {o["name"]: o for o in tgt.pvcs}
    if not plan.vms:
        res.add("vms", "NoVms", "the plan names no VM")
    # Overrides are taken first, so a templated name never takes a name a user chose.
    for ref in plan.vms:
        if ref.get("targetName"):
            vm_names.take(ref["targetName"], ref.get("id") or ref.get("name", ""))
    seen: set[str] = set()
    for i, ref in enumerate(plan.vms):
        path, vid = f"vms[{i}]", ref.get("id")
        if vid is None:  # named at write time, and no VM had that name
            res.add(path, "VmNotFound", f"no VM named {ref.get('name')!r} in the source provider")
            continue
        if vid in seen:
            res.add(path, "VmDuplicate", "the VM is listed twice", vm=vid)
            continue
        seen.add(vid)
        if vid in plan.done:
            continue
        vm = found.get(vid)
        if vm is None:
            res.add(path, "VmNotFound", f"no VM {vid!r} in the source provider", vm=vid)
            continue
        res.names[vid] = vm["name"]
        for c in vm.get("concerns") or []:
            if c["category"] in ("Critical", "Warning"):
                res.add(
                    path,
                    "CriticalConcern" if c["category"] == "Critical" else "Concern",
                    f"{c['label']}: {c['assessment']} ({c['id']})",
                    severity=ERROR if c["category"] == "Critical" else WARNING,
                    vm=vid,
                )
        if ref.get("targetName"):
            target_name = ref["targetName"]
        else:
            text = naming.render(template_vm, {"name": vm["name"], "id": vid, "plan": plan.name})
            target_name = vm_names.take(text, vid)
        _check_name(res, f"{path}.targetName", "VirtualMachine", target_name, existing_vms, plan)
        if target_name in plan.taken:
            res.add(
                f"{path}.targetName",
                "NameTakenByPlan",
                f"plan {plan.taken[target_name]!r} migrates a VM named {target_name!r} into "
                f"namespace {plan.target_namespace!r}",
                vm=vid,
            )
        disks = _plan_disks(res, path, plan, ptype, vm, target_name, storages, pvc_names)
        for j, d in enumerate(disks):
            _check_name(
                res, f"{path}.disks[{j}].pvcName", "PersistentVolumeClaim", d.pvc_name,
                existing_pvcs, plan, vm=vid,
            )  # fmt: skip
        nics = _plan_nics(res, path, ptype, vm, networks)
        if not disks:
            res.add(path, "VmHasNoDisks", "the VM has no disk: it would not boot", WARNING, vm=vid)
        res.vms.append(
            PlannedVm(
                vm_id=vid,
                name=vm["name"],
                target_name=target_name,
                disks=disks,
                nics=nics,
                source_power_state=shaping.power_state(ptype, vm),
                detail=shaping.machine(ptype, vm),
            )
        )
    if not res.ok:
        res.vms = []


def _check_name(
    res: Result,
    path: str,
    kind: str,
    name: str,
    existing: dict[str, Obj],
    plan: PlanInput,
    vm: str | None = None,
) -> None:
    other = existing.get(name)
    if other is None:
        return
    owner = ((other.get("data") or {}).get("labels") or {}).get(labels.PLAN)
    if owner == plan.id:  # left by an earlier run of this plan: the orchestrator reuses it
        return
    res.add(
        path,
        "NameCollision",
        f"a {kind} named {name!r} already exists in namespace {plan.target_namespace!r}; "
        "set a targetName or change the naming template",
        vm=vm,
    )


def _plan_disks(
    res: Result,
    path: str,
    plan: PlanInput,
    ptype: ProviderType,
    vm: Obj,
    target_name: str,
    storages: dict[str, _Storage],
    pvc_names: naming.Names,
) -> list[PlannedDisk]:
    template = plan.naming.get("pvc") or naming.DEFAULT_PVC
    out: list[PlannedDisk] = []
    for j, d in enumerate(shaping.disks(ptype, vm)):
        dpath = f"{path}.disks[{j}]"
        storage = storages.get(d.storage)
        if res.use("storage", d.storage):
            continue  # the entry's own problem says why
        if storage is None:
            where = "image-backed root disk (Glance)" if d.storage == shaping.GLANCE else (
                f"storage {d.storage!r}" if d.storage else "no storage (no volume type)"
            )  # fmt: skip
            res.add(
                dpath,
                "StorageNotMapped",
                f"disk {d.name!r} comes from {where}, which the storage map does not map",
                vm=vm["id"],
            )
            continue
        if d.size_bytes is None:
            res.add(dpath, "DiskSizeUnknown", f"disk {d.name!r} has no known size", vm=vm["id"])
            continue
        need = claim_bytes(d.size_bytes, storage.volume_mode)
        if storage.limit is not None and need > storage.limit:
            res.add(
                dpath,
                "DiskTooLarge",
                f"disk {d.name!r} needs a {need} byte claim ({storage.volume_mode}), more than "
                f"the {storage.limit} bytes StorageClass {storage.storage_class!r} can provision",
                vm=vm["id"],
            )
        text = naming.render(
            template,
            {"vm": target_name, "vmName": vm["name"], "vmId": vm["id"], "disk": d.name,
             "diskId": d.id, "index": j, "plan": plan.name},
        )  # fmt: skip
        out.append(
            PlannedDisk(
                disk_id=d.id,
                name=d.name,
                size_bytes=d.size_bytes,
                format=d.format,
                source_storage=d.storage,
                boot=d.boot,
                bus=d.bus,
                pvc_name=pvc_names.take(text, f"{vm['id']}/{d.id}"),
                storage_class=storage.storage_class,
                volume_mode=storage.volume_mode,
                access_mode=storage.access_mode,
            )
        )
    return out


def _plan_nics(
    res: Result, path: str, ptype: ProviderType, vm: Obj, networks: dict[str, str]
) -> list[PlannedNic]:
    out: list[PlannedNic] = []
    pod = 0
    for k, n in enumerate(shaping.nics(ptype, vm)):
        if n.network is None:
            res.add(
                f"{path}.nics[{k}]",
                "NicNotConnected",
                f"NIC {n.name!r} is connected to no network; it is migrated unplugged",
                WARNING,
                vm=vm["id"],
            )
            target = "ignored"
        elif n.network not in networks:
            res.add(
                f"{path}.nics[{k}]",
                "NetworkNotMapped",
                f"NIC {n.name!r} is on network {n.network!r}, which the network map does not map",
                vm=vm["id"],
            )
            continue
        else:
            target = networks[n.network]
            res.use("network", n.network)
        pod += target == "pod"
        out.append(
            PlannedNic(
                nic_id=n.id, name=n.name, mac=n.mac, model=n.model,
                source_network=n.network or "", target=target,
            )
        )  # fmt: skip
    if pod > 1:
        res.add(
            f"{path}.nics",
            "MultiplePodNetworks",
            f"{pod} NICs map to the pod network; a KubeVirt VM has at most one pod network "
            "interface (map the others to Multus networks)",
            vm=vm["id"],
        )
    return out


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
    plan = PlanInput(
        id="", name="", source_provider=source["id"], target_provider=target["id"],
        target_namespace="", migration_type="cold", transfer_network=None, naming={}, vms=[],
        network_map={"entries": []}, storage_map={"entries": entries},
    )  # fmt: skip
    c, p, cap = await asyncio.gather(
        inv.list(target["id"], "storageclasses"),
        inv.list(target["id"], "storageprofiles"),
        inv.list(target["id"], "storagecapacities"),
    )
    tgt = _Target(
        namespaces={},
        classes={o["id"]: o for o in c},
        profiles={o["parent"] or o["id"]: o for o in p},
        nads={},
        capacities=cap,
        vms=[],
        pvcs=[],
    )
    await _storage_destinations(inv, res, plan, ptype, source["id"], tgt)
    for kind, key in list(res.deferred):  # on its own, a map's every entry counts
        res.use(kind, key)
    return res.problems
