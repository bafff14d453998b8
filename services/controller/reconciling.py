"""One user claim, brought one step closer to populated: level-triggered and idempotent.

Each call reads everything fresh (claim, CR, class, Secret, prime claim, pod, volume) and
does the next thing the mechanism needs, so a call after a crash, a duplicate event or a
restart of the whole controller simply continues (see ../shared/reference/populators.md):

1. wait, with an Event, for the CR, the StorageClass, the selected node (under
   WaitForFirstConsumer) and the Secret; a static class's prime gets a pinned volume
   (``pinning``) instead of waiting for a consumer;
2. add the finalizer (race-safe: the patch carries the claim's resourceVersion);
3. create the prime claim and the populator pod; announce the pod once it runs;
4. pod Succeeded: hand the prime's volume to the user claim (claimRef + populated-from);
5. user claim Bound (prime Lost): delete pod and prime, CR Succeeded, drop the finalizer.

A failed pod's log goes into the CR first; it is then replaced while the claim's
``recreations`` allows, else the CR fails for good (``ending``). A deleted user claim is
cleaned up at once. A multi-stage (warm) CR takes steps 3 and 4 once per stage, all into
the one prime claim (``staging``). The return value is a delay after which to look again
(None: the watches will say when).

Next: services/populators/__main__.py
"""

from __future__ import annotations

import logging

from kubernetes_asyncio.client.exceptions import ApiException

from services.controller import manifests, metrics, status
from services.controller.ending import Ending
from services.controller.events import Announcer
from services.controller.kubeevents import NORMAL, Recorder
from services.controller.pinning import Pinning
from services.controller.queue import Key
from services.controller.scraping import ProgressReader
from services.controller.staging import Staging
from shared import populator as contract
from shared import volumes
from shared.kube import POD, PV, PVC, SECRET, STORAGE_CLASS, Kube, Obj, conflict
from shared.payloads import Outcome
from shared.populator import BlockChecksum, SourceRef, StageResult, source_of
from shared.settings import OrchestratorSettings

log = logging.getLogger("hoist.controller.reconcile")

WFFC = "WaitForFirstConsumer"
POLL_SECONDS = 3.0
"""How soon a wait nothing watched (StorageClass, Secret, the binder) is looked at again."""
RETRY_SECONDS = 2.0
"""How soon a step that needs NATS is tried again."""


class Reconciler:
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
        self.ending = Ending(kube, settings, recorder, announcer)
        self.progress = ProgressReader(kube)
        self.poll = min(POLL_SECONDS, settings.controller_resync_seconds)
        self.staging = Staging(self)
        self.pinning = Pinning(self)

    async def reconcile(self, key: Key) -> float | None:
        namespace, name = key
        claim = await self.kube.get(PVC, name, namespace)
        if claim is None:
            return None
        claim.setdefault("apiVersion", "v1")
        claim.setdefault("kind", "PersistentVolumeClaim")
        source = source_of(claim)
        if source is None:
            return None
        meta = claim["metadata"]
        uid = meta["uid"]
        if meta.get("deletionTimestamp"):
            return await self.ending.claim_deleted(claim, source)
        if self.ending.is_done(uid) and contract.FINALIZER not in (meta.get("finalizers") or []):
            return None
        if (claim.get("status") or {}).get("phase") == "Bound":
            return await self.ending.claim_bound(claim, source)

        populator = await status.read(self.kube, source)
        if populator is None:
            await self.say(
                claim,
                "WaitingForSource",
                f"waiting for {source.kind.name} {source.namespace}/{source.name} to exist",
            )
            return self.settings.controller_resync_seconds
        if contract.Status.of(populator).is_stale(uid):
            populator = await status.reset(self.kube, populator, uid)
        if contract.Status.of(populator).is_final_failure(uid):
            return await self.ending.clean_up_failed(claim, source)
        return await self._populate(claim, source, populator)

    async def _populate(self, claim: Obj, source: SourceRef, populator: Obj) -> float | None:
        meta, spec = claim["metadata"], claim["spec"]
        namespace, uid = meta["namespace"], meta["uid"]

        class_name = str(spec.get("storageClassName") or "")
        storage_class = await self.kube.get(STORAGE_CLASS, class_name) if class_name else None
        if class_name and storage_class is None:
            await self.wait(
                claim,
                populator,
                "WaitingForStorageClass",
                f"waiting for StorageClass {class_name} to exist",
            )
            return self.poll
        static = volumes.is_static(class_name, storage_class)
        node = (meta.get("annotations") or {}).get(contract.SELECTED_NODE) or None
        wffc = (storage_class or {}).get("volumeBindingMode") == WFFC
        if wffc and not node and not static:
            # A static class needs no consumer: the volume is picked here (``pinning``).
            await self.wait(
                claim,
                populator,
                "WaitingForFirstConsumer",
                f"StorageClass {class_name} binds on first consumer: waiting for a pod that "
                "uses the claim to be scheduled",
            )
            return None  # the scheduler's selected-node annotation is a claim change
        secret = str((populator.get("spec") or {}).get(source.kind.spec.CREDENTIALS_FIELD, ""))
        # Only whether it exists: the pod gets the credentials (``envFrom``), this
        # controller keeps none.
        if not secret or await self.kube.get(SECRET, secret, namespace) is None:
            await self.wait(
                claim,
                populator,
                "WaitingForSecret",
                f"waiting for Secret {namespace}/{secret or '?'} (the source credentials)",
            )
            return self.poll

        claim = await self._with_finalizer(claim)
        prime = await self.kube.get(PVC, contract.prime_claim(uid), namespace)
        pod = await self.kube.get(POD, contract.populator_pod(uid), namespace)
        stages = contract.Stages.of(populator)
        if static and prime is not None and (lost := await self.pinning.lost(claim, prime)):
            return await self.pinning.give_up(claim, prime, pod, lost)
        if static and prime is None and pod is None and not (stages and stages.copied):
            pinned = await self.pinning.reserve(claim, populator, node)
            if not isinstance(pinned, str):
                return pinned
            prime = await self.create_prime(claim, None, pinned)
        elif static:
            node = None  # the pod goes where the volume is (its affinity), not to a node
        if stages is not None:
            return await self.staging.step(claim, source, populator, stages, prime, pod, node)
        if prime is None:
            if pod is not None:
                # The volume this pod wrote is gone (someone deleted the prime claim):
                # its copy is worthless; retire it and start over.
                return await self.ending.retire_pod(claim, source, pod, "the prime claim is gone")
            prime = await self.create_prime(claim, node)
        if pod is None:
            if await self.handed_over(prime, uid):
                return self.poll  # the binder binds the user claim next
            return await self.create_pod(claim, source, populator, node)
        if pod["metadata"].get("deletionTimestamp"):
            return None  # its deletion wakes us
        phase = (pod.get("status") or {}).get("phase") or "Pending"
        if phase == "Succeeded":
            return await self.succeeded(claim, source, populator, prime, pod)
        return await self.copying(claim, source, populator, pod)

    async def copying(
        self, claim: Obj, source: SourceRef, populator: Obj, pod: Obj, stage: str = ""
    ) -> float | None:
        """A pod that has not succeeded (yet): starting, copying, failed (``stage``: the
        stage it copies, said in the CR's message)."""
        phase = (pod.get("status") or {}).get("phase") or "Pending"
        if phase == "Pending":
            waiting = manifests.waiting_reason(pod) or "Pending"
            of = f" for {stage}" if stage else ""
            if why := manifests.unschedulable(pod):
                # Told as the scheduler says it (a cordoned or full node of a local
                # volume); the pod is scheduled, and the CR moves on, once it fits.
                await self.wait(
                    claim,
                    populator,
                    "PopulatorPodUnschedulable",
                    f"populator pod {pod['metadata']['name']}{of} cannot be scheduled: {why}",
                )
                return None
            await status.write(
                self.kube,
                populator,
                claim["metadata"]["uid"],
                phase=contract.Phase.PENDING,
                reason=waiting,
                message=f"populator pod {pod['metadata']['name']}{of} is starting ({waiting})",
                pod=pod["metadata"]["name"],
            )
            return None
        if phase == "Running":
            return await self._running(claim, source, populator, pod, stage)
        if phase == "Failed":
            return await self.ending.pod_failed(claim, source, populator, pod)
        return self.poll  # Unknown: the node is not reporting; look again

    # --- steps ---------------------------------------------------------------------------

    async def _with_finalizer(self, claim: Obj) -> Obj:
        """The claim with the finalizer on it. The patch names the resourceVersion read, so
        a concurrent change (the scheduler, a user) makes it a 409 and the reconcile
        runs again on fresh data instead of overwriting the finalizer list."""
        meta = claim["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if contract.FINALIZER in finalizers:
            return claim
        patched = await self.kube.patch(
            PVC,
            meta["name"],
            {
                "metadata": {
                    "finalizers": [*finalizers, contract.FINALIZER],
                    "resourceVersion": meta["resourceVersion"],
                }
            },
            meta["namespace"],
        )
        patched.setdefault("apiVersion", "v1")
        patched.setdefault("kind", "PersistentVolumeClaim")
        return patched

    async def create_prime(self, claim: Obj, node: str | None, volume: str = "") -> Obj:
        """``volume``: the static volume pinned to it (``pinning``)."""
        body = manifests.prime_claim(claim, node, volume)
        namespace = claim["metadata"]["namespace"]
        try:
            prime = await self.kube.create(PVC, body, namespace)
        except ApiException as exc:
            if not conflict(exc):
                raise
            found = await self.kube.get(PVC, body["metadata"]["name"], namespace)
            if found is None:
                raise
            return found
        where = f" on node {node}" if node else ""
        where += f" bound to volume {volume}" if volume else ""
        await self.say(
            claim,
            "PrimeClaimCreated",
            f"created prime claim {body['metadata']['name']}{where} for the populator to fill",
        )
        return prime

    async def handed_over(self, prime: Obj, uid: str) -> bool:
        """Whether the prime's volume already names the user claim (the rebind happened,
        and the pod that wrote it is gone): then no pod is needed any more."""
        volume_name = (prime.get("spec") or {}).get("volumeName")
        if not volume_name:
            return False
        volume = await self.kube.get(PV, volume_name)
        ref = ((volume or {}).get("spec") or {}).get("claimRef") or {}
        return bool(ref.get("uid") == uid)

    async def create_pod(
        self,
        claim: Obj,
        source: SourceRef,
        populator: Obj,
        node: str | None,
        stage: contract.StageArgs | None = None,
        what: str = "",
    ) -> float | None:
        """``stage`` and ``what`` (its description): the stage of a multi-stage CR."""
        meta = claim["metadata"]
        affinity = None if node else await self.pinning.affinity(claim)
        body = manifests.populator_pod(claim, populator, self.settings, node, stage, affinity)
        name = body["metadata"]["name"]
        try:
            await self.kube.create(POD, body, meta["namespace"])
        except ApiException as exc:
            if not conflict(exc):
                raise
            return 0.0  # made already (by a run this one raced): look at it
        metrics.PODS_CREATED.inc()
        recreations = self.ending.recreations(claim)
        attempt = f" (attempt {recreations + 1})" if recreations else ""
        where = f" on node {node}" if node else ""
        await self.say(
            claim,
            "PopulatorPodCreated",
            f"created populator pod {name}{where} to copy {what or 'the disk'} from "
            f"{source.kind.name} {source.namespace}/{source.name}{attempt}",
        )
        await status.write(
            self.kube,
            populator,
            meta["uid"],
            phase=contract.Phase.PENDING,
            progress="0",
            reason="PodCreated",
            message=f"populator pod {name} created" + (f" for {what}" if what else ""),
            recreations=recreations,
            pod=name,
        )
        return None

    async def _running(
        self, claim: Obj, source: SourceRef, populator: Obj, pod: Obj, stage: str
    ) -> float | None:
        pod_status = pod.get("status") or {}
        name = pod["metadata"]["name"]
        uid = claim["metadata"]["uid"]
        if not pod_status.get("podIP"):
            return None  # the IP comes with a status update, which wakes us
        announced = await self.announcer.started(claim, source.kind, pod)
        node = pod.get("spec", {}).get("nodeName", "?")
        fields: dict[str, object] = {
            "phase": contract.Phase.RUNNING,
            "reason": "Copying",
            "message": f"populator pod {name} is copying {stage + ' ' if stage else ''}"
            f"on node {node}",
            "pod": name,
        }
        percent = await self.progress.percent(pod, source.kind, uid)
        current = contract.Status.of(populator).progress
        if percent is not None and percent > _int(current):
            fields["progress"] = str(percent)
        await status.write(self.kube, populator, uid, **fields)
        await self.say(claim, "PopulatorRunning", f"populator pod {name} is copying on {node}")
        return None if announced else RETRY_SECONDS

    async def succeeded(
        self, claim: Obj, source: SourceRef, populator: Obj, prime: Obj, pod: Obj
    ) -> float | None:
        """The copy is complete: give the prime's volume to the user claim. The binder then
        binds the user claim and marks the prime Lost; ``ending.claim_bound`` finishes."""
        # Announced now for the progress service; the pod is only deleted once it is.
        await self.announcer.started(claim, source.kind, pod)
        await self.announcer.finished(claim, source.kind, pod, Outcome.SUCCEEDED)
        result = StageResult.parse(str(manifests.termination(pod).get("message") or ""))
        checksum = result.checksum if result is not None else None
        return await self.hand_over(
            claim, source, populator, prime, pod["metadata"]["name"], checksum
        )

    async def hand_over(
        self,
        claim: Obj,
        source: SourceRef,
        populator: Obj,
        prime: Obj,
        name: str,
        checksum: BlockChecksum | None = None,
    ) -> float | None:
        """The prime's volume to the user claim (``name``: the pod that wrote it last). The
        pod's block checksum of the data, when it reported one, goes onto the volume with
        it (``CHECKSUM_ANNOTATION``), where it stays as long as the data."""
        meta = claim["metadata"]
        uid = meta["uid"]
        await status.write(
            self.kube,
            populator,
            uid,
            phase=contract.Phase.RUNNING,
            progress="100",
            reason="Rebinding",
            message=f"populator pod {name} succeeded; handing its volume to the claim",
            pod=name,
        )
        volume_name = str((prime.get("spec") or {}).get("volumeName") or "")
        volume = await self.kube.get(PV, volume_name) if volume_name else None
        if volume is None:
            return self.poll
        ref = (volume.get("spec") or {}).get("claimRef") or {}
        if ref.get("uid") != uid:
            annotations = {contract.POPULATED_FROM: f"{source.namespace}/{source.name}"}
            if checksum is not None:
                annotations[contract.CHECKSUM_ANNOTATION] = checksum.text()
            await self.kube.patch(
                PV,
                volume_name,
                {
                    "metadata": {"annotations": annotations},
                    "spec": {
                        "claimRef": {
                            "apiVersion": "v1",
                            "kind": "PersistentVolumeClaim",
                            "namespace": meta["namespace"],
                            "name": meta["name"],
                            "uid": uid,
                            "resourceVersion": meta["resourceVersion"],
                        }
                    },
                },
            )
            await self.say(
                claim,
                "VolumeHandedOver",
                f"populator pod {name} succeeded; volume {volume_name} handed from the "
                f"prime claim to this claim",
            )
        return self.poll  # the binder's change wakes us; this bounds a missed one

    # --- events --------------------------------------------------------------------------

    async def say(self, claim: Obj, reason: str, message: str) -> None:
        await self.recorder.record(claim, NORMAL, reason, message)

    async def wait(self, claim: Obj, populator: Obj, reason: str, message: str) -> None:
        """A wait: an Event on the claim, and the CR says what it waits for."""
        await self.say(claim, reason, message)
        await status.write(
            self.kube,
            populator,
            claim["metadata"]["uid"],
            phase=contract.Phase.PENDING,
            reason=reason,
            message=message,
        )


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0
