"""Static storage: the prime claim of a claim whose class has no dynamic provisioner gets a
pre-created volume, pinned before the prime exists.

A static class (``kubernetes.io/no-provisioner``, or ``storageClassName: ""``) has only
the volumes an administrator made, local ones often usable on one node only. Left to the
PersistentVolume controller, a prime claim would bind whichever volume it found first, or
wait forever under WaitForFirstConsumer (the populator pod is its only consumer, and one
pinned to a node bypasses the scheduler). So the controller picks the volume itself, as
the PV controller would (``shared.volumes.best``: the smallest Available one that fits
class, size, volume mode, access modes and the user claim's selector, and the selected
node's affinity when a consumer was scheduled already), and pins it:

1. the volume's ``claimRef`` names the prime claim (by name: it has no uid yet), patched
   with the volume's ``resourceVersion``, so a claim that bound it meanwhile makes the
   patch a 409 and the choice is made again on fresh data: nobody's volume is taken;
2. the prime claim is created with ``spec.volumeName``: the PV controller binds the two
   (pre-bound on both sides, so no other claim can take the volume in between);
3. the populator pod gets the volume's node affinity as its own, so the scheduler (not a
   ``nodeName`` that bypasses it) places the pod where the volume is, and says why when
   it cannot (the node cordoned or full): that reason is the CR's until the node frees.

A restart between 1 and 2 finds the volume already pre-bound to the prime's name and
keeps it. A volume that stops naming the prime (an administrator rebound it, or deleted
it) is given up: the pod that wrote it, if any, goes with the prime, and the next look
pins another volume, or waits with ``WAITING_FOR_VOLUME`` and what is missing. The
hand-over to the user claim is the dynamic one (``Reconciler.hand_over``): the volume is
trusted only because Hoist's pod filled it (``POPULATED_FROM``), which ``ending`` checks.

Next: services/controller/ending.py
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING

from kubernetes_asyncio.client.exceptions import ApiException

from services.controller.kubeevents import WARNING
from shared import populator as contract
from shared import volumes
from shared.kube import NODE, PV, PVC, Kube, Obj, conflict

if TYPE_CHECKING:
    from services.controller.reconciling import Reconciler

log = logging.getLogger("hoist.controller.pinning")

WAITING_FOR_VOLUME = "WaitingForVolume"
"""Pending: a static class and no Available volume that fits (the message says what)."""
VOLUME_RESERVED = "VolumeReserved"
VOLUME_TAKEN = "VolumeTaken"
"""Warning: the pinned volume no longer names the prime claim; another is chosen."""


class Pinning:
    def __init__(self, reconciler: Reconciler) -> None:
        self.r = reconciler
        self.kube: Kube = reconciler.kube
        # One choice at a time per VM: its disks are reconciled concurrently, and two looks
        # at once would each see no sibling pinned and could pick volumes on two nodes.
        # One controller runs per cluster, so a lock in this process is enough.
        self._vm_locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def reserve(self, claim: Obj, populator: Obj, node: str | None) -> str | float | None:
        """The volume pinned to the claim's (future) prime: its name, or the delay after
        which to look again (waiting for a volume, or a race lost to another claim)."""
        meta = claim["metadata"]
        vm = (meta.get("labels") or {}).get(contract.VM) or meta["uid"]
        key = (str(meta["namespace"]), str(vm))
        lock = self._vm_locks.get(key)
        if lock is None:
            lock = self._vm_locks[key] = asyncio.Lock()
        async with lock:
            return await self._reserve(claim, populator, node)

    async def _reserve(self, claim: Obj, populator: Obj, node: str | None) -> str | float | None:
        meta, spec = claim["metadata"], claim["spec"]
        namespace, prime = meta["namespace"], contract.prime_claim(meta["uid"])
        pvs, _ = await self.kube.list(PV)
        for pv in pvs:
            if volumes.bound_to(pv, namespace, prime):
                return str(pv["metadata"]["name"])  # pinned by an earlier run
        node_obj = await self.kube.get(NODE, node) if node else None
        # A VM runs on one node: its local volumes should be there too. The node of a disk
        # pinned already; else, for the first, a node where all the VM's disks fit. Preferred,
        # not required (a volume elsewhere beats none; the VM's start then says why).
        near = await self._siblings_nodes(claim, pvs)
        if not near and node is None:
            near = await self._node_for_all(claim, pvs)
        chosen = volumes.best(spec, [pv for pv in pvs if _on(pv, near)], node_obj) if near else None
        chosen = chosen or volumes.best(spec, pvs, node_obj)
        if chosen is None:
            where = f" usable on node {node}" if node else ""
            await self.r.wait(claim, populator, WAITING_FOR_VOLUME, volumes.need(spec) + where)
            return self.r.poll  # volumes are not watched: look again
        name = str(chosen["metadata"]["name"])
        try:
            await self.kube.patch(
                PV,
                name,
                {
                    "metadata": {"resourceVersion": chosen["metadata"]["resourceVersion"]},
                    "spec": {
                        "claimRef": {
                            "apiVersion": "v1",
                            "kind": "PersistentVolumeClaim",
                            "namespace": namespace,
                            "name": prime,
                        }
                    },
                },
            )
        except ApiException as exc:
            if not conflict(exc):
                raise
            log.info("volume %s changed while pinning it for %s: choosing again", name, prime)
            return 0.0
        await self.r.say(
            claim,
            VOLUME_RESERVED,
            f"volume {name} ({volumes.capacity(chosen)} bytes"
            f"{_where(chosen)}) reserved for prime claim {prime}",
        )
        return name

    async def _siblings_nodes(self, claim: Obj, pvs: list[Obj]) -> set[str]:
        """The nodes of the local volumes the claim's VM has already (its other disks'
        claims and primes)."""
        meta = claim["metadata"]
        vm = (meta.get("labels") or {}).get(contract.VM)
        if not vm:
            return set()
        siblings, _ = await self.kube.list(PVC, meta["namespace"], selector=f"{contract.VM}={vm}")
        names = {str(c["metadata"]["name"]) for c in siblings} - {meta["name"]}
        return {
            host
            for pv in pvs
            if ((pv.get("spec") or {}).get("claimRef") or {}).get("namespace") == meta["namespace"]
            and ((pv.get("spec") or {}).get("claimRef") or {}).get("name") in names
            for host in volumes.node_names(pv)
        }

    async def _node_for_all(self, claim: Obj, pvs: list[Obj]) -> set[str]:
        """The node where every disk of the claim's VM still waiting for a volume gets one
        (largest first, each the smallest that fits), with the least capacity spent; empty
        when no single node has room for them all, or none of the volumes is local."""
        meta = claim["metadata"]
        vm = (meta.get("labels") or {}).get(contract.VM)
        siblings: list[Obj] = [claim]
        if vm:
            found, _ = await self.kube.list(PVC, meta["namespace"], selector=f"{contract.VM}={vm}")
            siblings = [
                c
                for c in found
                if contract.source_of(c) is not None and not (c.get("spec") or {}).get("volumeName")
            ] or [claim]
        wanting = [c["spec"] for c in siblings if volumes.best(c["spec"], pvs) is not None]
        wanting.sort(key=lambda spec: -volumes.requested_bytes(spec))
        hosts = sorted(
            {h for pv in pvs if volumes.is_available(pv) for h in volumes.node_names(pv)}
        )
        best: tuple[int, str] | None = None
        for host in hosts:
            left = [pv for pv in pvs if _on(pv, {host})]
            spent = 0
            for spec in wanting:
                pick = volumes.best(spec, left)
                if pick is None:
                    break
                left = [pv for pv in left if pv is not pick]
                spent += volumes.capacity(pick)
            else:
                if best is None or (spent, host) < best:
                    best = (spent, host)
        return {best[1]} if best else set()

    async def lost(self, claim: Obj, prime: Obj) -> str:
        """Why the prime's pinned volume is no longer its own ("" while it is)."""
        name = str((prime.get("spec") or {}).get("volumeName") or "")
        if not name:
            return ""
        pv = await self.kube.get(PV, name)
        if pv is None:
            return f"volume {name} was deleted"
        pmeta, meta = prime["metadata"], claim["metadata"]
        if volumes.bound_to(pv, pmeta["namespace"], pmeta["name"], pmeta["uid"]):
            return ""
        if volumes.bound_to(pv, meta["namespace"], meta["name"], meta["uid"]):
            return ""  # handed over already
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        holder = f"{ref.get('namespace', '?')}/{ref.get('name', '?')}" if ref else "nobody"
        return f"volume {name} now belongs to {holder}"

    async def give_up(self, claim: Obj, prime: Obj, pod: Obj | None, why: str) -> float | None:
        """Drop the prime (and its pod) of a volume that is not its own any more; the
        next look pins another. What the pod wrote is not handed to anyone."""
        source = contract.source_of(claim)
        if (
            pod is not None
            and source is not None
            and not await self.r.ending.remove_pod(claim, source, pod)
        ):
            return 2.0
        pmeta = prime["metadata"]
        await self.kube.delete(PVC, pmeta["name"], pmeta["namespace"], uid=pmeta["uid"])
        message = f"{why}: prime claim {pmeta['name']} deleted, another volume is chosen"
        await self.r.recorder.record(claim, WARNING, VOLUME_TAKEN, message)
        return 0.5

    async def affinity(self, claim: Obj) -> Obj | None:
        """The node affinity of the volume pinned to the claim's prime (None: none)."""
        meta = claim["metadata"]
        prime = await self.kube.get(PVC, contract.prime_claim(meta["uid"]), meta["namespace"])
        name = str(((prime or {}).get("spec") or {}).get("volumeName") or "")
        pv = await self.kube.get(PV, name) if name else None
        terms = volumes.node_terms(pv) if pv is not None else []
        if not terms:
            return None
        return {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}


def _on(pv: volumes.Obj, nodes: set[str]) -> bool:
    hosts = volumes.node_names(pv)
    return not volumes.node_terms(pv) or bool(nodes & set(hosts))


def _where(pv: volumes.Obj) -> str:
    """``, on node n1`` for a local volume pinned to named nodes."""
    names = volumes.node_names(pv)
    return f", on node {','.join(names)}" if names else ""
