"""KubeVirt's VirtualMachine status, as virt-controller keeps it.

No guest runs here (there is no virt-launcher), but what an administrator and a client read
of a VirtualMachine is its status, and that follows its volumes and run strategy the way
KubeVirt's does: a VM to run whose claim is missing is `ErrorPvcNotFound`, one whose claim
is not bound yet is `WaitingForVolumeBinding`, one whose claims are all bound runs
(`Running`, `ready`, `created`, a Ready condition); a halted or manual one is `Stopped`
with the Ready condition False (reason `VMINotExists`), and a deleted one `Terminating`.
Claims come from `persistentVolumeClaim` and `dataVolume` volumes (CDI names a
DataVolume's claim after it).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sim.kube.controllers.queue import Item, QueueController
from sim.kube.kinds import Kind
from sim.kube.store import Change

if TYPE_CHECKING:
    from sim.kube.cluster import Cluster

Obj = dict[str, Any]
VMS = ("kubevirt.io", "VirtualMachine")
RUNNING_STRATEGIES = frozenset({"Always", "RerunOnFailure", "Once"})


def run_strategy(spec: Obj) -> str:
    """The effective strategy: `running` is the older spelling of Always/Halted."""
    if "running" in spec and spec["running"] is not None:
        return "Always" if spec["running"] else "Halted"
    return str(spec.get("runStrategy") or "Halted")


def claims_of(vm: Obj) -> list[str]:
    template = (vm.get("spec") or {}).get("template") or {}
    volumes = (template.get("spec") or {}).get("volumes") or []
    names = []
    for volume in volumes:
        if (volume.get("persistentVolumeClaim") or {}).get("claimName"):
            names.append(volume["persistentVolumeClaim"]["claimName"])
        elif (volume.get("dataVolume") or {}).get("name"):
            names.append(volume["dataVolume"]["name"])
    return names


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def desired_status(vm: Obj, claims: dict[str, Obj | None]) -> Obj:
    """What virt-controller would write for this VM given its claims."""
    spec = vm.get("spec") or {}
    strategy = run_strategy(spec)
    old = vm.get("status") or {}
    missing = sorted(name for name, claim in claims.items() if claim is None)
    pending = sorted(
        name
        for name, claim in claims.items()
        if claim is not None and (claim.get("status") or {}).get("phase") != "Bound"
    )
    runs = strategy in RUNNING_STRATEGIES and not missing and not pending
    if vm["metadata"].get("deletionTimestamp"):
        printable, ready, reason, message = "Terminating", False, "VMINotExists", "VMI is deleted"
    elif strategy not in RUNNING_STRATEGIES:
        printable, ready, reason, message = "Stopped", False, "VMINotExists", "VMI does not exist"
    elif missing:
        printable, ready = "ErrorPvcNotFound", False
        reason = "FailedPvcNotFound"
        message = f"PVC {vm['metadata'].get('namespace')}/{missing[0]} does not exist"
    elif pending:
        printable, ready = "WaitingForVolumeBinding", False
        reason = "VMINotExists"
        message = f"PVC {pending[0]} is not bound yet"
    else:
        printable, ready, reason, message = "Running", True, "", ""
    condition: Obj = {
        "type": "Ready",
        "status": "True" if ready else "False",
        "lastProbeTime": None,
        "lastTransitionTime": _now(),
    }
    if reason:
        condition["reason"] = reason
        condition["message"] = message
    before = next((c for c in old.get("conditions") or [] if c.get("type") == "Ready"), None)
    if before and before.get("status") == condition["status"]:
        condition["lastTransitionTime"] = before.get("lastTransitionTime")
    status: Obj = {
        "printableStatus": printable,
        "runStrategy": strategy,
        "conditions": [condition],
        "desiredGeneration": vm["metadata"].get("generation", 1),
        "observedGeneration": vm["metadata"].get("generation", 1),
    }
    if runs:
        status["created"] = True
        status["ready"] = True
    return status


class VirtualMachines(QueueController):
    name = "virtualmachines"

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.claims = cluster.kind("persistentvolumeclaims")

    def _vms(self) -> Kind | None:
        return self.cluster.registry.by_kind(*VMS)

    def interest(self, kind: Kind, change: Change) -> Iterable[Item]:
        meta = change.entry.obj["metadata"]
        if kind.key == VMS:
            yield ("vm", meta.get("namespace", ""), meta["name"])
        elif kind.key == self.claims.key and (vms := self._vms()) is not None:
            # a claim's phase changes the status of the VMs using it
            for entry in self.store.scan(vms, meta.get("namespace")):
                if meta["name"] in claims_of(entry.obj):
                    yield ("vm", meta.get("namespace", ""), entry.obj["metadata"]["name"])

    def initial(self) -> Iterable[Item]:
        vms = self._vms()
        for entry in self.store.scan(vms) if vms is not None else ():
            meta = entry.obj["metadata"]
            yield ("vm", meta.get("namespace", ""), meta["name"])

    async def reconcile(self, item: Item) -> float | None:
        vms = self._vms()
        if vms is None:
            return None
        _, namespace, name = item
        found = self.store.find(vms, namespace, name)
        if found is None:
            return None
        vm = found.obj
        claims = {
            claim: (
                found_claim.obj
                if (found_claim := self.store.find(self.claims, namespace, claim)) is not None
                else None
            )
            for claim in claims_of(vm)
        }
        wanted = desired_status(vm, claims)
        if wanted != vm.get("status"):

            def set_status(obj: Obj) -> None:
                obj["status"] = wanted

            self.store.mutate(vms, namespace, name, set_status, subresource="status")
        return None
