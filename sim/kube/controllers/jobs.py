"""The Job controller: run-to-completion pods, as `kube-controller-manager`'s job controller
runs them for the non-indexed Jobs Hoist's hooks are.

What a client of a real cluster relies on, and this one does the same way:

- one pod at a time per Job (``parallelism`` and ``completions`` 1, what Hoist creates; a
  larger value is served as 1), named ``<job>-<5 chars>``, with the template's labels
  (the API server added ``batch.kubernetes.io/controller-uid`` and ``job-name``) and the
  Job as its controlling owner, so deleting the Job (background) takes its pods along;
- a failed pod is replaced after the controller's back-off (10 s, doubled per failure, at
  most 6 min) until ``status.failed`` exceeds ``spec.backoffLimit``: then the condition
  ``Failed`` (reason ``BackoffLimitExceeded``); a pod that succeeds ends the Job with
  ``Complete`` and ``completionTime``;
- ``spec.activeDeadlineSeconds`` counts from ``status.startTime``: when it passes, the
  running pods are deleted (graceful termination, as the kubelet does it) and the Job fails
  with ``DeadlineExceeded``, whatever its retries left;
- ``status.active``, ``ready``, ``succeeded``, ``failed`` and the Events a user reads in
  ``kubectl describe job`` (``SuccessfulCreate``, ``Completed``, ``BackoffLimitExceeded``,
  ``DeadlineExceeded``).

Not simulated: indexed Jobs, ``parallelism`` > 1, pod failure policies, ``suspend``,
``ttlSecondsAfterFinished`` and ``restartPolicy: OnFailure`` restarts counting as failures.
"""

from __future__ import annotations

import asyncio
import random
import string
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sim.kube.controllers.queue import Item, QueueController
from sim.kube.errors import ApiError
from sim.kube.kinds import Kind
from sim.kube.store import Change, Obj, now

if TYPE_CHECKING:
    from sim.kube.cluster import Cluster

COMPONENT = "job-controller"
BACKOFF_SECONDS = 10.0
BACKOFF_MAX_SECONDS = 360.0
_NAME_CHARS = string.ascii_lowercase + string.digits


def _finished(job: Obj) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def _parse(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _controller_of(pod: Obj) -> str | None:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == "Job" and ref.get("controller"):
            return str(ref.get("name"))
    return None


class JobController(QueueController):
    name = "jobs"

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.jobs = cluster.kind("jobs", "batch")
        self.pods = cluster.kind("pods")
        #: Job uid -> loop time before which no new pod is made (the back-off).
        self._not_before: dict[str, float] = {}

    def interest(self, kind: Kind, change: Change) -> Iterable[Item]:
        obj = change.entry.obj
        meta = obj["metadata"]
        if kind.key == self.jobs.key:
            yield ("job", meta["namespace"], meta["name"])
        elif kind.key == self.pods.key:
            owner = _controller_of(obj)
            if owner:
                yield ("job", meta["namespace"], owner)

    def initial(self) -> Iterable[Item]:
        for entry in self.store.scan(self.jobs):
            meta = entry.obj["metadata"]
            yield ("job", meta["namespace"], meta["name"])

    def _pods_of(self, job: Obj) -> list[Obj]:
        uid = job["metadata"]["uid"]
        return [
            e.obj
            for e in self.store.scan(self.pods, job["metadata"]["namespace"])
            if any(
                r.get("uid") == uid and r.get("controller")
                for r in e.obj["metadata"].get("ownerReferences") or []
            )
        ]

    async def reconcile(self, item: Item) -> float | None:
        _, namespace, name = item
        found = self.store.find(self.jobs, namespace, name)
        if found is None:
            return None
        job = found.obj
        if job["metadata"].get("deletionTimestamp"):
            return None  # the garbage collector takes its pods
        pods = self._pods_of(job)
        if _finished(job):
            self._stop(pods)
            return None
        spec = job.get("spec") or {}
        status: dict[str, Any] = dict(job.get("status") or {})
        status.setdefault("startTime", now())
        phases = [(p.get("status") or {}).get("phase") for p in pods]
        succeeded = phases.count("Succeeded")
        failed = phases.count("Failed")
        running = [
            p for p, phase in zip(pods, phases, strict=True) if phase not in ("Succeeded", "Failed")
        ]
        active = [p for p in running if not p["metadata"].get("deletionTimestamp")]
        status.update(
            active=len(active),
            ready=sum(1 for p in active if (p.get("status") or {}).get("phase") == "Running"),
            succeeded=succeeded,
            failed=failed,
            terminating=len(running) - len(active),
        )
        deadline = spec.get("activeDeadlineSeconds")
        elapsed = (datetime.now(UTC) - _parse(status["startTime"])).total_seconds()
        outcome: tuple[str, str, str] | None = None
        if succeeded >= 1:
            outcome = ("Complete", "", "")
        elif failed > int(spec.get("backoffLimit", 6)):
            outcome = (
                "Failed",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            )
        elif deadline is not None and elapsed >= deadline:
            outcome = (
                "Failed",
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            )
        if outcome is not None:
            kind, reason, message = outcome
            stamp = now()
            condition = {"type": kind, "status": "True", "lastProbeTime": stamp,
                         "lastTransitionTime": stamp}  # fmt: skip
            if reason:
                condition.update(reason=reason, message=message)
            status["conditions"] = [*(status.get("conditions") or []), condition]
            if kind == "Complete":
                status["completionTime"] = stamp
            status["active"] = status["ready"] = 0
            self._write(job, status)
            self._stop(active)
            if kind == "Complete":
                self._event(job, "Normal", "Completed", "Job completed")
            else:
                self._event(job, "Warning", reason, message)
            self._not_before.pop(job["metadata"]["uid"], None)
            return None
        wait: float | None = None if deadline is None else max(deadline - elapsed, 0.05)
        if not running:  # TerminatingOrFailed: a terminating pod is not replaced yet
            loop_now = self._loop_time()
            uid = job["metadata"]["uid"]
            if failed and uid not in self._not_before:
                delay = min(BACKOFF_SECONDS * 2 ** (failed - 1), BACKOFF_MAX_SECONDS)
                self._not_before[uid] = loop_now + delay
            due = self._not_before.get(uid, loop_now)
            if due > loop_now:
                self._write(job, status)
                return min(due - loop_now, wait) if wait is not None else due - loop_now
            self._not_before.pop(uid, None)
            self._create_pod(job)
            status["active"] = 1
        self._write(job, status)
        return wait

    def _loop_time(self) -> float:
        return asyncio.get_running_loop().time()

    def _create_pod(self, job: Obj) -> None:
        meta = job["metadata"]
        template = job["spec"]["template"]
        suffix = "".join(random.choices(_NAME_CHARS, k=5))
        pod = {
            "metadata": {
                **{k: v for k, v in (template.get("metadata") or {}).items() if k != "name"},
                "name": f"{meta['name'][:57]}-{suffix}",
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": template.get("spec") or {},
        }
        try:
            created = self.store.create(self.pods, pod, meta["namespace"])
        except ApiError as exc:
            self._event(job, "Warning", "FailedCreate", f"Error creating: {exc}")
            raise
        self._event(
            job, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}"
        )

    def _stop(self, pods: list[Obj]) -> None:
        for pod in pods:
            meta = pod["metadata"]
            phase = (pod.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed") or meta.get("deletionTimestamp"):
                continue
            try:
                self.store.delete(self.pods, meta["namespace"], meta["name"])
            except ApiError:
                continue  # gone already

    def _write(self, job: Obj, status: dict[str, Any]) -> None:
        if job.get("status") == status:
            return
        meta = job["metadata"]

        def change(obj: Obj) -> None:
            obj["status"] = status

        self.store.mutate(self.jobs, meta["namespace"], meta["name"], change, subresource="status")

    def _event(self, job: Obj, event_type: str, reason: str, message: str) -> None:
        self.cluster.record(job, event_type, reason, message, COMPONENT)
