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

from services.planner import hooks, mapping, naming, shaping, warm
from services.planner.inventoryclient import InventoryClient, Obj
from services.planner.problems import ERROR, WARNING, Result
from shared import populator as contract
from shared.payloads import (
    HookSpec,
    MigrationType,
    PlannedDisk,
    PlannedNic,
    PlannedVm,
    PowerState,
    ProviderPhase,
    ProviderRef,
    ProviderType,
    ResourceRef,
)
from shared.sizing import claim_bytes


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
    vms: list[dict[str, Any]]  # [{id, name?, targetName?, targetPowerState?, convertGuest?}]
    network_map: dict[str, Any]  # the map rows
    storage_map: dict[str, Any]
    #: The plan's convertGuest: each VM's unless the VM says otherwise.
    convert_guest: bool = False
    #: The plan's hooks ([{step, hook}]; a VM's own ``hooks`` replace them at their step),
    #: and the definitions of every hook the plan names, by name.
    hooks: list[dict[str, Any]] = field(default_factory=list)
    hook_specs: dict[str, HookSpec] = field(default_factory=dict)
    #: VMs an earlier migration of this plan migrated: not validated, not migrated again.
    done: frozenset[str] = frozenset()
    #: Target VM names other plans hold in the same namespace (name -> plan name).
    taken: dict[str, str] = field(default_factory=dict)
    #: Source VMs this request already read from the inventory (id -> object).
    known_vms: dict[str, Obj] = field(default_factory=dict)
    #: List filters of the selector that chose the VMs (they cover most of them still).
    selector_filters: dict[str, str] = field(default_factory=dict)


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
    source, target = await asyncio.gather(
        inv.provider(plan.source_provider), inv.provider(plan.target_provider)
    )
    _check_provider(res, "sourceProvider", source, shaping.SOURCE_TYPES)
    check_warm_disks = False
    if (
        plan.migration_type == MigrationType.WARM.value
        and source is not None
        and source["type"] in [t.value for t in shaping.SOURCE_TYPES]
    ):
        check_warm_disks = warm.check_source(res, source)
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
        mapping.load_target(inv, tid, plan.target_namespace),
        inv.objects(
            sid,
            "vms",
            [v["id"] for v in plan.vms if v.get("id")],
            known=plan.known_vms,
            within=plan.selector_filters,
        ),
    )
    ns = tgt.namespaces.get(plan.target_namespace)
    if ns is None:
        res.add("targetNamespace", "NamespaceNotFound", _missing_ns(plan.target_namespace))
    elif ns.get("status") == "Terminating":
        res.add("targetNamespace", "NamespaceTerminating", "the namespace is being deleted")
    networks = await mapping.network_destinations(
        inv, res, plan.network_map["entries"], plan.target_namespace, sid, tgt
    )
    storages = await mapping.storage_destinations(
        inv, res, plan.storage_map["entries"], ptype, sid, tgt
    )
    if plan.transfer_network:
        nad = mapping.nad_id(plan.transfer_network, plan.target_namespace)
        if nad not in tgt.nads:
            res.add(
                "transferNetwork",
                "NetworkAttachmentDefinitionNotFound",
                f"no NetworkAttachmentDefinition {nad} in the target cluster",
            )
    shared = await _sharing_vms(inv, sid, ptype, plan, vms)
    _check_vms(res, plan, ptype, vms, networks, storages, tgt, check_warm_disks, shared)
    return res


async def _sharing_vms(
    inv: InventoryClient, sid: str, ptype: ProviderType, plan: PlanInput, found: dict[str, Obj]
) -> dict[str, list[str]]:
    """Shareable disk id -> names of every source VM it is attached to, for the disks of
    the plan's VMs. The inventory keeps no disk-to-VMs index, so the source's VMs are
    listed, but only when a plan has such a disk (rare: cluster quorum disks)."""
    wanted = {
        d.id
        for v in plan.vms
        if v.get("id") in found and v["id"] not in plan.done
        for d in shaping.disks(ptype, found[v["id"]])
        if d.shareable
    }
    if not wanted:
        return {}
    out: dict[str, list[str]] = {d: [] for d in wanted}
    for vm in await inv.list(sid, "vms"):
        for d in shaping.disks(ptype, vm):
            if d.id in out and vm["name"] not in out[d.id]:
                out[d.id].append(vm["name"])
    return out


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


def _check_vms(
    res: Result,
    plan: PlanInput,
    ptype: ProviderType,
    found: dict[str, Obj],
    networks: dict[str, str],
    storages: dict[str, mapping.Storage],
    tgt: mapping.Target,
    warm_disks: bool = False,
    shared: dict[str, list[str]] | None = None,
) -> None:
    """``warm_disks``: the plan goes warm from a source whose disks may (each report why a
    disk cannot). ``shared``: the VMs each shareable disk is attached to (``_sharing_vms``)."""
    vm_names = naming.Names()
    pvc_names = naming.Names()
    template_vm = plan.naming.get("vm") or naming.DEFAULT_VM
    existing_vms = {o["name"]: o for o in tgt.vms}
    existing_pvcs = {o["name"]: o for o in tgt.pvcs}
    if not plan.vms:
        res.add("vms", "NoVms", "the plan names no VM")
    # Overrides are taken first, so a templated name never takes a name a user chose.
    chosen: dict[str, int] = {}
    for i, ref in enumerate(plan.vms):
        name = ref.get("targetName")
        if not name:
            continue
        if name in chosen:
            res.add(
                f"vms[{i}].targetName",
                "TargetNameDuplicate",
                f"vms[{chosen[name]}] already has the targetName {name!r}",
                vm=ref.get("id"),
            )
        chosen.setdefault(name, i)
        vm_names.take(name, ref.get("id") or ref.get("name", ""))
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
        if warm_disks:
            for j, sd in enumerate(shaping.disks(ptype, vm)):
                warm.check_disk(res, f"{path}.disks[{j}]", vid, sd)
        for j, sd in enumerate(shaping.disks(ptype, vm)):
            if sd.shareable:
                _refuse_shared(res, f"{path}.disks[{j}]", vm, sd, (shared or {}).get(sd.id, []))
        disks = _plan_disks(res, path, plan, ptype, vm, target_name, storages, pvc_names)
        for j, d in enumerate(disks):
            _check_name(
                res, f"{path}.disks[{j}].pvcName", "PersistentVolumeClaim", d.pvc_name,
                existing_pvcs, plan, vm=vid,
            )  # fmt: skip
        nics = _plan_nics(res, path, ptype, vm, networks)
        if not disks:
            res.add(path, "VmHasNoDisks", "the VM has no disk: it would not boot", WARNING, vm=vid)
        if ptype is ProviderType.OPENSTACK:
            _check_cpu(res, path, vm)
        vm_hooks, missing = hooks.planned(plan.hooks, ref.get("hooks"), plan.hook_specs)
        for name in missing:  # deleted since the plan was written
            res.add(f"{path}.hooks", "HookNotFound", f"no hook {name!r}: create it", vm=vid)
        res.vms.append(
            PlannedVm(
                vm_id=vid,
                name=vm["name"],
                target_name=target_name,
                disks=disks,
                nics=nics,
                source_power_state=shaping.power_state(ptype, vm),
                target_power_state=PowerState(ref["targetPowerState"])
                if ref.get("targetPowerState")
                else None,
                detail=shaping.machine(ptype, vm),
                convert_guest=plan.convert_guest
                if ref.get("convertGuest") is None
                else bool(ref["convertGuest"]),
                hooks=vm_hooks,
                source=dict(vm) if vm_hooks else None,
            )
        )
    if not res.ok:
        res.vms = []


def _refuse_shared(
    res: Result, path: str, vm: Obj, disk: shaping.SourceDisk, sharing: list[str]
) -> None:
    """A shareable disk would be copied once per VM that has it, each copy going its own
    way while the other VMs keep writing to the original: refused until one copy can be
    attached to every VM (ReadWriteMany)."""
    others = [n for n in sharing if n != vm["name"]]
    with_ = f"shared with VM(s) {', '.join(repr(n) for n in others)}" if others else (
        "shareable (attachable to several VMs)"
    )  # fmt: skip
    res.add(
        path,
        "SharedDiskUnsupported",
        f"disk {disk.name!r} ({disk.id}) is {with_}; a shared disk cannot be migrated yet "
        "(each VM would get a copy of its own). Detach it from the VM in oVirt before "
        "migrating, or migrate it separately and attach it to the migrated VMs",
        vm=vm["id"],
    )


def _check_cpu(res: Result, path: str, vm: Obj) -> None:
    """A warning when Nova's topology rules had to leave flavor or image values out (Nova
    would refuse them at the next boot; the VM keeps its vCPU count all the same)."""
    choice = shaping.cpu_topology(vm.get("data") or {})
    if choice.ignored is None:
        return
    t = choice.topology
    res.add(
        f"{path}.cpu",
        "CpuTopologyIgnored",
        f"{choice.ignored}; the VM gets {t.sockets} socket(s) x {t.cores} core(s) x "
        f"{t.threads} thread(s) = {t.vcpus} vCPUs, its flavor's count",
        WARNING,
        vm=vm["id"],
    )


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
    owner = ((other.get("data") or {}).get("labels") or {}).get(contract.PLAN)
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
    storages: dict[str, mapping.Storage],
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
        if storage.pool is not None and (
            storage.pool.take(need, storage.volume_mode, storage.access_mode) is None
        ):
            res.add(
                dpath,
                "StaticVolumeMissing",
                f"disk {d.name!r} needs a {need} byte claim: "
                + storage.pool.missing(need, storage.volume_mode, storage.access_mode),
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
                f"NIC {n.name!r} is connected to no network; the VirtualMachine gets no "
                "interface for it (its MAC is not carried over)",
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
