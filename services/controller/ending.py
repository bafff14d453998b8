"""How a population ends: completed, failed (again, or for good), or abandoned.

Every path that deletes a populator pod first announces its end on NATS (``finished``
with the outcome its phase says) and deletes it by uid, so a newer pod of the same name is
never hit. The finalizer comes off last, after the prime claim and the pod are gone (or
their deletion is under way), so a crash anywhere in between is resumed by the next
reconcile. A failed pod's log and termination message reach the CR's status before the
pod is deleted: once it is gone, that is all anyone will have. A CR Succeeded (or Failed)
is what the pipeline's DiskTransfer step waits for.

Next: services/orchestrator/disks.py
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from kubernetes_asyncio.client.exceptions import ApiException

from services.controller import manifests, metrics, status
from services.controller.events import Announcer
from services.controller.kubeevents import NORMAL, WARNING, Recorder
from shared import populator as contract
from shared.kube import POD, PV, PVC, Kube, Obj, conflict, not_found
from shared.payloads import ErrorInfo, Outcome
from shared.populator import SourceRef
from shared.populator.stages import STAGE_FAILED, Stages
from shared.settings import OrchestratorSettings

log = logging.getLogger("hoist.controller.ending")

RETRY_SECONDS = 2.0
POLL_SECONDS = 3.0
LOG_LINES = 400
"""Of a failed pod's log, the lines read (then cut to what its CR's status can hold)."""
DONE_MEMORY = 50_000
"""Claims remembered as finished, so resyncs skip them (older ones cost a few reads)."""


def last_line(text: str, limit: int = 400) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()[:limit]
    return ""


class Ending:
    def __init__(
        self,
        kube: Kube,
        settings: OrchestratorSettings,
        recorder: Recorder,
        announcer: Announcer,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.recorder = recorder
        self.announcer = announcer
        self._done: OrderedDict[str, None] = OrderedDict()

    def is_done(self, uid: str) -> bool:
        return uid in self._done

    def _finished(self, uid: str) -> None:
        self._done[uid] = None
        while len(self._done) > DONE_MEMORY:
            self._done.popitem(last=False)
        self.recorder.forget(uid)

    @staticmethod
    def recreations(claim: Obj) -> int:
        value = ((claim["metadata"].get("annotations") or {}).get(contract.RECREATIONS)) or "0"
        try:
            return max(0, int(value))
        except ValueError:
            return 0

    # --- the user claim is gone, or bound ------------------------------------------------

    async def claim_deleted(self, claim: Obj, source: SourceRef) -> float | None:
        """Deleted mid-population (or after): stop the pod, delete the prime, let go."""
        meta = claim["metadata"]
        pod = await self.kube.get(POD, contract.populator_pod(meta["uid"]), meta["namespace"])
        if pod is not None and not await self.remove_pod(claim, source, pod):
            return RETRY_SECONDS
        await self.kube.delete(PVC, contract.prime_claim(meta["uid"]), meta["namespace"])
        if contract.FINALIZER in (meta.get("finalizers") or []):
            await self._record(
                claim,
                NORMAL,
                "PopulationAbandoned",
                "the claim is being deleted: populator pod and prime claim deleted",
            )
            await self.remove_finalizer(claim)
            metrics.POPULATIONS.labels("abandoned").inc()
        self._finished(meta["uid"])
        return None

    async def claim_bound(self, claim: Obj, source: SourceRef) -> float | None:
        """The user claim is Bound: to the populated volume (finish up), or to one nobody
        populated (a static volume it bound to by itself: the data cannot be trusted)."""
        meta, uid = claim["metadata"], claim["metadata"]["uid"]
        volume_name = claim["spec"].get("volumeName", "")
        volume = await self.kube.get(PV, volume_name) if volume_name else None
        vmeta = (volume or {}).get("metadata") or {}
        ref = ((volume or {}).get("spec") or {}).get("claimRef") or {}
        populated = contract.POPULATED_FROM in (vmeta.get("annotations") or {})
        if not (populated and ref.get("uid") == uid):
            return await self._bound_without_data(claim, source, volume_name)
        prime = await self.kube.get(PVC, contract.prime_claim(uid), meta["namespace"])
        if prime is not None and (prime.get("status") or {}).get("phase") != "Lost":
            return POLL_SECONDS  # the binder has not marked it Lost yet
        pod = await self.kube.get(POD, contract.populator_pod(uid), meta["namespace"])
        if pod is not None and not await self.remove_pod(claim, source, pod):
            return RETRY_SECONDS
        if prime is not None:
            await self.kube.delete(PVC, prime["metadata"]["name"], meta["namespace"])
        populator = await status.read(self.kube, source)
        message = (
            f"volume {volume_name} holds the data of {source.kind.name} "
            f"{source.namespace}/{source.name}"
        )
        if populator is not None:
            await status.write(
                self.kube,
                populator,
                uid,
                phase=contract.Phase.SUCCEEDED,
                progress="100",
                reason=contract.Reason.COMPLETED,
                message=message,
            )
            await self.announcer.ended(claim, source.kind, Outcome.SUCCEEDED)
        if contract.FINALIZER in (meta.get("finalizers") or []):
            await self._record(claim, NORMAL, "PopulationCompleted", message)
            await self.remove_finalizer(claim)
            metrics.POPULATIONS.labels("succeeded").inc()
        self._finished(uid)
        return None

    async def _bound_without_data(
        self, claim: Obj, source: SourceRef, volume_name: str
    ) -> float | None:
        uid = claim["metadata"]["uid"]
        if self.is_done(uid):
            return None
        message = (
            f"the claim bound to volume {volume_name} without this controller populating "
            "it (a statically provisioned or pre-existing volume?): it does not hold the "
            "source disk; give the claim a storage class with a dynamic provisioner"
        )
        populator = await status.read(self.kube, source)
        if populator is not None and not contract.Status.of(populator).is_final_failure(uid):
            await status.write(
                self.kube,
                populator,
                uid,
                phase=contract.Phase.FAILED,
                reason=contract.Reason.BOUND_WITHOUT_DATA,
                message=message,
            )
        await self._record(claim, WARNING, contract.Reason.BOUND_WITHOUT_DATA, message)
        # Without its CR the failure has nowhere to be read from yet: keep looking, so a
        # CR created later gets it.
        return await self.clean_up_failed(claim, source, final=populator is not None)

    # --- failures ------------------------------------------------------------------------

    async def pod_failed(
        self, claim: Obj, source: SourceRef, populator: Obj, pod: Obj
    ) -> float | None:
        """Keep the evidence, announce, then replace the pod or fail the CR for good."""
        meta = claim["metadata"]
        uid, pod_name, pod_uid = meta["uid"], pod["metadata"]["name"], pod["metadata"]["uid"]
        ended = manifests.termination(pod)
        code = ended.get("exitCode")
        log_tail = await self.kube.log(
            meta["namespace"],
            pod_name,
            manifests.CONTAINER,
            tail_lines=LOG_LINES,
            limit_bytes=contract.Status.LOG_LIMIT,
        )
        why = (
            last_line(str(ended.get("message") or ""))
            or last_line(log_tail)
            or str(ended.get("reason") or "no output")
        )
        done = self.recreations(claim)
        counted = (meta.get("annotations") or {}).get(contract.LAST_FAILED_POD) == pod_uid
        limit = self.settings.populator_max_recreations
        again = counted or done < limit
        made = done if counted else done + (1 if again else 0)
        pod_message = f"populator pod {pod_name} failed with exit code {code}: {why}"
        if again:
            fields = {
                "phase": contract.Phase.RUNNING,
                "reason": contract.Reason.POD_FAILED,
                "message": f"{pod_message}; making another ({made}/{limit})",
            }
        else:
            fields = {
                "phase": contract.Phase.FAILED,
                "reason": contract.Reason.POPULATOR_FAILED,
                "message": f"the populator failed {done + 1} times; the last pod "
                f"({pod_name}) exited with code {code}: {why}",
            }
        checkpoint = manifests.stage_of(pod) if Stages.of(populator) is not None else ""
        if not again and checkpoint:
            # Not Failed: the stage's backup may be what failed (``_stage_failed``).
            fields = {
                "phase": contract.Phase.RUNNING,
                "reason": STAGE_FAILED,
                "message": f"the stage of checkpoint {checkpoint} failed {done + 1} times; "
                f"the last pod ({pod_name}) exited with code {code}: {why}; waiting for a "
                "new checkpoint",
            }
            # Named before the reason says so: whoever reads StageFailed finds which stage.
            populator = await status.fail_stage(self.kube, populator, checkpoint)
        await status.write(
            self.kube,
            populator,
            uid,
            log=log_tail or str(ended.get("message") or ""),
            recreations=made,
            pod=pod_name,
            **fields,
        )
        error = ErrorInfo(reason=str(fields["reason"]), message=pod_message, permanent=not again)
        if not await self.announcer.finished(claim, source.kind, pod, Outcome.FAILED, error):
            return RETRY_SECONDS  # the pod stays until its end is announced
        metrics.POD_FAILURES.inc()
        if not again and checkpoint:
            return await self._stage_failed(claim, pod, str(fields["message"]))
        if not again:
            await self._record(
                claim, WARNING, contract.Reason.POPULATOR_FAILED, str(fields["message"])
            )
            metrics.POPULATIONS.labels("failed").inc()
            await self.announcer.ended(claim, source.kind, Outcome.FAILED)
            return await self.clean_up_failed(claim, source)
        if not counted:
            # Counted together with the pod's uid: a controller that restarts before the
            # pod is deleted sees this pod counted already and does not count it again.
            await self.kube.patch(
                PVC,
                meta["name"],
                {
                    "metadata": {
                        "annotations": {
                            contract.RECREATIONS: str(made),
                            contract.LAST_FAILED_POD: pod_uid,
                        },
                        "resourceVersion": meta["resourceVersion"],
                    }
                },
                meta["namespace"],
            )
        await self._record(
            claim,
            WARNING,
            contract.Reason.POD_FAILED,
            f"{pod_message}; making another ({made}/{limit})",
        )
        await self.kube.delete(POD, pod_name, meta["namespace"], uid=pod_uid)
        self.announcer.forget(pod_uid)
        return None  # the pod's deletion wakes us, and the next pod is made

    async def _stage_failed(self, claim: Obj, pod: Obj, message: str) -> float | None:
        """A stage's pods failed past the limit. The CR does not fail: its backup may be
        what failed (an engine restart), and the orchestrator, which owns the backups,
        decides: a new checkpoint (a new backup), or the VM fails with this message. The
        prime keeps the stages copied; the next stage starts with a fresh count."""
        meta = claim["metadata"]
        await self._record(claim, WARNING, STAGE_FAILED, message)
        await self.kube.patch(
            PVC,
            meta["name"],
            {"metadata": {"annotations": {contract.RECREATIONS: "0"}}},
            meta["namespace"],
        )
        await self.kube.delete(
            POD, pod["metadata"]["name"], meta["namespace"], uid=pod["metadata"]["uid"]
        )
        self.announcer.forget(pod["metadata"]["uid"])
        return None

    async def clean_up_failed(
        self, claim: Obj, source: SourceRef, *, final: bool = True
    ) -> float | None:
        """The CR failed for good: nothing more will be copied. Pod and prime go, and the
        finalizer, so the pipeline can delete the claim without this controller."""
        meta = claim["metadata"]
        pod = await self.kube.get(POD, contract.populator_pod(meta["uid"]), meta["namespace"])
        if pod is not None and not await self.remove_pod(claim, source, pod):
            return RETRY_SECONDS
        await self.kube.delete(PVC, contract.prime_claim(meta["uid"]), meta["namespace"])
        if contract.FINALIZER in (meta.get("finalizers") or []):
            await self.remove_finalizer(claim)
        if not final:
            return self.settings.controller_resync_seconds
        self._finished(meta["uid"])
        return None

    async def retire_pod(self, claim: Obj, source: SourceRef, pod: Obj, why: str) -> float | None:
        """Delete a pod whose work cannot be used; the next reconcile starts over."""
        if not await self.remove_pod(claim, source, pod):
            return RETRY_SECONDS
        await self._record(
            claim,
            WARNING,
            "PopulatorPodRetired",
            f"deleted populator pod {pod['metadata']['name']}: {why}",
        )
        return 0.5

    # --- helpers -------------------------------------------------------------------------

    async def remove_pod(self, claim: Obj, source: SourceRef, pod: Obj) -> bool:
        """Announce the pod's end, then delete it; False when NATS did not take the news."""
        pod_status = pod.get("status") or {}
        phase = pod_status.get("phase") or "Pending"
        pod_uid = pod["metadata"]["uid"]
        if phase != "Pending":
            if phase == "Succeeded":
                outcome, error = Outcome.SUCCEEDED, None
            elif phase == "Failed":
                ended = manifests.termination(pod)
                outcome = Outcome.FAILED
                error = ErrorInfo(
                    reason=contract.Reason.POD_FAILED.value,
                    message=f"exit code {ended.get('exitCode')}: "
                    f"{last_line(str(ended.get('message') or '')) or 'no message'}",
                    permanent=False,
                )
            else:
                outcome = Outcome.CANCELED
                error = ErrorInfo(
                    reason="Canceled",
                    message="the populator pod was deleted before it finished",
                    permanent=False,
                )
            if not await self.announcer.started(claim, source.kind, pod):
                return False
            if not await self.announcer.finished(claim, source.kind, pod, outcome, error):
                return False
        pod_meta = pod["metadata"]
        await self.kube.delete(POD, pod_meta["name"], pod_meta["namespace"], uid=pod_uid)
        self.announcer.forget(pod_uid)
        return True

    async def remove_finalizer(self, claim: Obj) -> None:
        """Drop the finalizer, keeping everyone else's; on a conflict read and try again."""
        meta = claim["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        current: Obj | None = claim
        for _ in range(10):
            if current is None or current["metadata"]["uid"] != uid:
                return
            cmeta = current["metadata"]
            finalizers = list(cmeta.get("finalizers") or [])
            if contract.FINALIZER not in finalizers:
                return
            try:
                await self.kube.patch(
                    PVC,
                    name,
                    {
                        "metadata": {
                            "finalizers": [f for f in finalizers if f != contract.FINALIZER],
                            "resourceVersion": cmeta["resourceVersion"],
                        }
                    },
                    namespace,
                )
                return
            except ApiException as exc:
                if not_found(exc):
                    return
                if not conflict(exc):
                    raise
            current = await self.kube.get(PVC, name, namespace)
        raise RuntimeError(f"claim {namespace}/{name} kept changing; finalizer removal retried")

    async def _record(self, claim: Obj, event_type: str, reason: str, message: str) -> None:
        await self.recorder.record(claim, event_type, reason, message)
