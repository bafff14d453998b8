"""DiskAllocation and DiskTransfer: the claims, their populators, and waiting for the bytes.

DiskAllocation makes, per disk, the user claim (``dataSourceRef`` naming a populator CR of
Hoist's kind, sized with filesystem overhead by ``shared.sizing``, modes from the storage
map or the StorageProfile as the planner resolved them) and the CR itself (owned by the
claim, so deleting the claim takes it along); then one copy of the source provider's Secret
for the VM's populator pods (owned by all its claims); and, when a claim's StorageClass
binds on first consumer, a consumer pod that mounts all of the VM's claims so the scheduler
picks a node and they bind (what Forklift's ``pvcinit`` pod does). The populator controller
does the rest.

DiskTransfer watches each disk: the CR's status (written by the controller: phase,
progress, and on failure the reason and the last pod's log) and the claim's phase. A disk is
done when its CR Succeeded and the claim is Bound; a Failed CR fails the VM with the
controller's reason, its message and the log kept in the step's detail.

DiskAllocation hands each disk to the populator controller through what the claim names
(the populator contract, ``shared/populator/``); once DiskTransfer is done, the VM goes on
to ``services/orchestrator/finishing.py``.

Next: shared/populator/__init__.py
"""

from __future__ import annotations

import time
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from services.orchestrator import manifests, naming
from services.orchestrator.answers import Answer, Done, Fail, Task, Wait, error
from services.orchestrator.context import StepContext
from services.orchestrator.manifests import owner_reference
from services.orchestrator.objects import POD, POPULATORS, PVC, SECRET
from shared import populator as contract
from shared import volumes
from shared.errors import RetryLater
from shared.kube import STORAGE_CLASS
from shared.payloads import ErrorInfo, PlannedDisk, ProviderType, StepProgress, StepState


async def allocate(ctx: StepContext) -> Answer:
    objects = await ctx.objects()
    ids = {"migration_id": ctx.migration_id, "vm_id": ctx.vm.vm_id}
    images: dict[str, str] = ctx.memory.get("images") or {}
    if ctx.header.source.type is ProviderType.OPENSTACK:
        missing = [d.disk_id for d in ctx.vm.disks if d.disk_id not in images]
        if missing:
            return Fail(error("ImageMissing", f"no converted image for disk(s) {missing}"))
    claims: list[dict[str, Any]] = []
    for disk in ctx.vm.disks:
        claims.append(await objects.ensure(PVC, manifests.claim(ctx.header, ctx.vm, disk), **ids))
    owners = [owner_reference(c) for c in claims]
    secret_name = naming.source_secret(ctx.vm.target_name, ctx.migration_id)
    data = await ctx.sources.secret(ctx.header.source)
    await objects.ensure(
        SECRET, manifests.source_secret(ctx.header, ctx.vm, data, owners, encoded=False), **ids
    )
    kind = POPULATORS[contract.kind_for(ctx.source_type)]
    tasks: list[Task] = []
    for disk, claim in zip(ctx.vm.disks, claims, strict=True):
        body = manifests.populator(
            ctx.header,
            ctx.vm,
            disk,
            secret_name=secret_name,
            owner=owner_reference(claim, controller=True),
            image_id=images.get(disk.disk_id),
        )
        await objects.ensure(kind, body, **ids)
        tasks.append(
            Task(
                disk.disk_id,
                StepState.COMPLETED,
                StepProgress(completed=1, total=1),
                detail={"pvc": disk.pvc_name, "storageClass": disk.storage_class},
            )
        )
    if await _binds_on_first_consumer(ctx, ctx.vm.disks):
        pod = manifests.consumer_pod(
            ctx.header,
            ctx.vm,
            [d.pvc_name for d in ctx.vm.disks],
            owners,
            image=ctx.settings.populator_image,
            pull_policy=ctx.settings.populator_pull_policy,
            run_as_user=ctx.settings.populator_uid,
        )
        await objects.ensure(POD, pod, **ids)
    ctx.memory["claims"] = {
        d.disk_id: c["metadata"]["uid"] for d, c in zip(ctx.vm.disks, claims, strict=True)
    }
    return Done(progress=StepProgress(completed=len(tasks), total=len(tasks)), tasks=tasks)


async def _binds_on_first_consumer(ctx: StepContext, disks: list[PlannedDisk]) -> bool:
    kube = await ctx.target()
    for name in sorted({d.storage_class for d in disks} - {""}):  # "": no class, no binding mode
        try:
            klass = await kube.get(STORAGE_CLASS, name)
        except ApiException as exc:
            raise RetryLater(
                f"cannot read StorageClass {name} ({exc.status}); retried in 5 s", 5
            ) from None
        if klass is None:
            # The controller reports the missing class on the claim; nothing to consume.
            continue
        if volumes.is_static(name, klass):
            # The controller pins a volume itself; a consumer could not be scheduled
            # anyway (the claims' hold selector matches no volume until hand-over).
            continue
        if klass.get("volumeBindingMode") == "WaitForFirstConsumer":
            return True
    return False


async def transfer(ctx: StepContext) -> Answer:
    objects = await ctx.objects()
    kind = POPULATORS[contract.kind_for(ctx.source_type)]
    started = float(ctx.memory.setdefault("transfer_started", time.time()))
    tasks: list[Task] = []
    done_bytes = total_bytes = 0
    failed: tuple[PlannedDisk, contract.Status] | None = None
    for disk in ctx.vm.disks:
        claim = await objects.get(PVC, disk.pvc_name)
        cr = await objects.get(kind, contract.populator_cr(disk.pvc_name))
        if claim is None or cr is None:
            what = "claim" if claim is None else "populator"
            return Fail(
                error(
                    "DiskLost",
                    f"the {what} of disk {disk.disk_id} ({disk.pvc_name}) was deleted while "
                    "copying; run the plan again",
                )
            )
        status = contract.Status.of(cr)
        phase = status.phase
        size = disk.size_bytes
        total_bytes += size
        if phase == contract.Phase.FAILED:
            failed = failed or (disk, status)
            tasks.append(
                Task(
                    disk.disk_id,
                    StepState.FAILED,
                    error=disk_error(disk, status),
                    detail={
                        "log": failure_log(status),
                        "recreations": status.recreations,
                        "pod": status.pod,
                    },
                )
            )
            continue
        bound = (claim.get("status") or {}).get("phase") == "Bound"
        if phase == contract.Phase.SUCCEEDED and bound:
            done_bytes += size
            tasks.append(
                Task(disk.disk_id, StepState.COMPLETED, StepProgress(completed=size, total=size))
            )
            continue
        copied = size * status.percent() // 100
        done_bytes += copied
        state = StepState.RUNNING if phase == contract.Phase.RUNNING else StepState.PENDING
        note = status.message or phase
        tasks.append(
            Task(
                disk.disk_id,
                state,
                StepProgress(completed=copied, total=size),
                detail={"phase": phase, "note": str(note)[:500]},
            )
        )
    progress = StepProgress(completed=done_bytes, total=total_bytes)
    if failed is not None:
        disk, status = failed
        return Fail(disk_error(disk, status), tasks=tasks)
    if all(t.state is StepState.COMPLETED for t in tasks):
        return Done(progress=progress, tasks=tasks)
    limit = ctx.settings.transfer_timeout_hours * 3600
    if time.time() - started > limit:
        return Fail(
            error(
                "TransferTimeout",
                f"the disks did not finish copying in {ctx.settings.transfer_timeout_hours:g} h",
                permanent=False,
            ),
            tasks=tasks,
        )
    # Not every poll_seconds: the controller's population.ended wakes the step when a disk
    # ends (runner.nudge); each look costs two reads per disk, for every VM copying.
    return Wait(ctx.settings.transfer_poll_seconds, progress=progress, tasks=tasks)


def disk_error(disk: PlannedDisk, status: contract.Status) -> ErrorInfo:
    """The controller's reason and message; permanent only for what a re-run cannot cure."""
    reason = status.reason or contract.Reason.POPULATOR_FAILED.value
    message = status.message or "the populator failed"
    return error(
        reason,
        f"disk {disk.name or disk.disk_id} ({disk.pvc_name}): {message}",
        permanent=reason in contract.PERMANENT_REASONS,
    )


def failure_log(status: contract.Status) -> str:
    """The end of the failed pod's log, as the controller kept it (bounded again here: a
    status written by another controller may be longer)."""
    return status.log[-contract.Status.LOG_LIMIT :]
