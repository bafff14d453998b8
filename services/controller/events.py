"""``populator.pod.started`` / ``populator.pod.finished`` on NATS, once per pod, and
``population.ended`` (core NATS) once a disk's CR is final.

Event ids derive from the pod's uid (``populator-started-<uid>``, ``populator-finished-
<uid>``): a controller that restarts and announces a pod again publishes the same id, and
JetStream's duplicate window drops it. A recreated pod has a new uid, so it is announced
anew. The reconciler deletes a pod only once its ``finished`` event is published, so no
pod ends unannounced; while NATS is away that waits (the publish is retried), and the
copy itself never waits for NATS.

``population.ended`` is a nudge, not a record: the orchestrator's DiskTransfer step looks at
the CR when it arrives instead of at its next poll. It is published at most once and never
retried; a lost one costs the orchestrator that poll.
"""

from __future__ import annotations

import logging

from shared import catalog
from shared import populator as contract
from shared.bus import Bus
from shared.kube import Obj
from shared.payloads import (
    ErrorInfo,
    Outcome,
    PopulationEnded,
    PopulatorPodFinished,
    PopulatorPodStarted,
    ResourceRef,
)

log = logging.getLogger("hoist.controller.announce")


def started_id(pod_uid: str) -> str:
    return f"populator-started-{pod_uid}"


def finished_id(pod_uid: str) -> str:
    return f"populator-finished-{pod_uid}"


def _ref(obj: Obj) -> ResourceRef:
    meta = obj["metadata"]
    return ResourceRef(namespace=meta["namespace"], name=meta["name"], uid=meta.get("uid"))


class Announcer:
    """Publishes pod events; remembers (per process) what it published already."""

    def __init__(self, bus: Bus | None) -> None:
        self.bus = bus
        self._done: set[str] = set()
        self._unannounceable: set[str] = set()

    def forget(self, pod_uid: str) -> None:
        self._done.discard(started_id(pod_uid))
        self._done.discard(finished_id(pod_uid))

    def _disk(self, claim: Obj, kind: contract.Kind) -> contract.DiskIds | None:
        """The claim's ids; None (logged once) when the pipeline did not label it."""
        disk = contract.DiskIds.of_claim(claim, kind)
        if disk.missing:
            uid = claim["metadata"]["uid"]
            if uid not in self._unannounceable:
                self._unannounceable.add(uid)
                log.warning(
                    "claim %s/%s lacks %s: its populator pods are not announced on NATS",
                    claim["metadata"]["namespace"],
                    claim["metadata"]["name"],
                    ", ".join(disk.missing),
                )
            return None
        return disk

    async def started(self, claim: Obj, kind: contract.Kind, pod: Obj) -> bool:
        """Announce a running pod; False when NATS did not take it (try again later)."""
        pod_uid = pod["metadata"]["uid"]
        event_id = started_id(pod_uid)
        disk = self._disk(claim, kind)
        if self.bus is None or disk is None or event_id in self._done:
            return True
        data = PopulatorPodStarted(
            plan_id=disk.plan_id,
            migration_id=disk.migration_id,
            vm_id=disk.vm_id,
            disk_id=disk.disk_id,
            cluster_id=disk.cluster_id,
            pod=_ref(pod),
            pod_ip=(pod.get("status") or {}).get("podIP") or None,
            metrics_port=contract.METRICS_PORT,
            metrics_scheme=contract.METRICS_SCHEME,
            owner_uid=claim["metadata"]["uid"],
            pvc=_ref(claim),
            total_bytes=disk.total_bytes,
            populator_kind=disk.populator_kind,
        )
        return await self._publish(catalog.POPULATOR_POD_STARTED, data, event_id)

    async def finished(
        self,
        claim: Obj,
        kind: contract.Kind,
        pod: Obj,
        outcome: Outcome,
        error: ErrorInfo | None = None,
    ) -> bool:
        pod_uid = pod["metadata"]["uid"]
        event_id = finished_id(pod_uid)
        disk = self._disk(claim, kind)
        if self.bus is None or disk is None or event_id in self._done:
            return True
        data = PopulatorPodFinished(
            plan_id=disk.plan_id,
            migration_id=disk.migration_id,
            vm_id=disk.vm_id,
            disk_id=disk.disk_id,
            cluster_id=disk.cluster_id,
            pod=_ref(pod),
            owner_uid=claim["metadata"]["uid"],
            outcome=outcome,
            error=error,
        )
        return await self._publish(catalog.POPULATOR_POD_FINISHED, data, event_id)

    async def ended(self, claim: Obj, kind: contract.Kind, outcome: Outcome) -> None:
        """The disk's CR is final (``outcome``): nudge the orchestrator, once, best effort."""
        disk = self._disk(claim, kind)
        if self.bus is None or disk is None:
            return
        data = PopulationEnded(
            plan_id=disk.plan_id,
            migration_id=disk.migration_id,
            vm_id=disk.vm_id,
            disk_id=disk.disk_id,
            cluster_id=disk.cluster_id,
            outcome=outcome,
        )
        try:
            await self.bus.publish(catalog.POPULATION_ENDED, data)
        except Exception as exc:  # the orchestrator's poll finds it anyway
            log.info("population.ended of claim %s not sent: %s", claim["metadata"]["uid"], exc)

    async def _publish(
        self,
        spec: catalog.EventSpec[PopulatorPodStarted] | catalog.EventSpec[PopulatorPodFinished],
        data: PopulatorPodStarted | PopulatorPodFinished,
        event_id: str,
    ) -> bool:
        assert self.bus is not None
        try:
            await self.bus.publish(spec, data, event_id=event_id)
        except Exception as exc:  # BusUnavailable, or NATS refusing: try again later
            log.warning("could not publish %s (%s); trying again shortly", event_id, exc)
            return False
        self._done.add(event_id)
        return True
