"""ConvertGuest: virt-v2v-in-place on all of a VM's volumes, in one pod, before its VM exists.

Opt-in per plan or per VM (``PlannedVm.convert_guest``; a VM without it has no such step).
It runs after the last disk step, when every claim is filled and bound, and before
VirtualMachineCreation, so nothing boots a disk being converted. One pod gets *all* the
VM's claims (``manifests.conversion_pod``): inspection mounts every filesystem the guest's
fstab names, which may live on any of its disks.

A call never blocks; across calls (and crashes) the step goes:

1. no pod yet: create it (create-or-get by its deterministic name, so a call repeated
   after a crash finds the pod the first one made, never a second) and wait;
2. the pod runs: wait (a short poll), up to ``HOIST_ORCHESTRATOR_CONVERTER_TIMEOUT_MINUTES``;
3. the pod ended: read its result (the termination message, ``ConversionResult``) and the
   end of its log, and *remember* them (``memory["conversion"]["result"]``) before
   anything else, answering "go on at once";
4. the outcome is remembered: delete the pod, answer Done or Fail with the outcome.

Recording before deleting is what makes a crash harmless: a crash after 3 finds the
outcome and never converts twice; one before it finds the pod and reads it again. The
pod's log and outcome end up in the step's detail (``pod``, ``log``, ``os``, ``seconds``,
``overlay``), as a failed populator's end up in its disk's task: the orchestrator's VM
view and ``hoist plans diagnose`` show them after the pod is gone. A failed conversion's
pod is removed with the VM's other objects by the teardown, its log kept the same way.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from services.orchestrator import manifests, naming
from services.orchestrator.answers import Answer, Done, Fail, Wait, error
from services.orchestrator.context import StepContext
from services.orchestrator.manifests import owner_reference
from services.orchestrator.objects import POD, PVC
from shared import conversion
from shared.populator import tail

MAX_PODS = 3
"""A pod that vanishes before it ended (deleted by someone, its node gone) is made again,
this often in all; then the step fails (``ConversionPodFailed``)."""


async def convert_guest(ctx: StepContext) -> Answer:
    memo: dict[str, Any] = ctx.memory.setdefault("conversion", {})
    objects = await ctx.objects()
    name = naming.conversion_pod(ctx.vm.target_name, ctx.migration_id)
    if memo.get("result") is not None:
        return await _finish(ctx, memo, name)
    pod = await objects.get(POD, name)
    if pod is not None and _ours(ctx, pod):
        return await _follow(ctx, memo, name, pod)
    if int(memo.get("pods", 0)) >= MAX_PODS:
        return Fail(
            error(
                conversion.Reason.POD_FAILED,
                f"the conversion pod {name} disappeared before it ended, {MAX_PODS} times",
                permanent=False,
            ),
            detail={"pod": name},
        )
    owners = []
    for disk in ctx.vm.disks:
        claim = await objects.get(PVC, disk.pvc_name)
        if claim is None:
            return Fail(
                error(
                    "DiskLost",
                    f"the claim {disk.pvc_name} of disk {disk.disk_id} is gone before the "
                    "guest was converted; run the plan again",
                )
            )
        owners.append(owner_reference(claim))
    args = manifests.convert_args(
        ctx.vm, accel=ctx.settings.converter_accel, overlay=ctx.settings.converter_overlay
    )
    settings = ctx.settings
    body = manifests.conversion_pod(
        ctx.header,
        ctx.vm,
        args,
        owners,
        image=settings.converter_image,
        pull_policy=settings.converter_pull_policy,
        cpu_limit=settings.converter_cpu_limit,
        memory_request=settings.converter_memory_request,
        memory_limit=settings.converter_memory_limit,
        run_as_user=settings.populator_uid,
    )
    created = await objects.ensure(POD, body, migration_id=ctx.migration_id, vm_id=ctx.vm.vm_id)
    uid = created["metadata"].get("uid")
    if memo.get("pod_uid") != uid:  # a pod this call made, not one an earlier call made
        memo["pods"] = int(memo.get("pods", 0)) + 1
        memo["pod_uid"] = uid
    memo.setdefault("started", time.time())
    return Wait(
        ctx.settings.poll_seconds, note=f"conversion pod {name} created", detail=_detail(memo, name)
    )


def _ours(ctx: StepContext, pod: dict[str, Any]) -> bool:
    """A pod of that name this VM of this migration made (``ensure`` sorts out the rest:
    a stale one of an earlier run, or one Hoist did not make)."""
    labels = pod["metadata"].get("labels") or {}
    mine = conversion.pod_labels(ctx.plan_id, ctx.migration_id, ctx.vm.vm_id)
    return all(labels.get(k) == v for k, v in mine.items())


async def _follow(ctx: StepContext, memo: dict[str, Any], name: str, pod: dict[str, Any]) -> Answer:
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    memo.setdefault("started", time.time())
    memo.setdefault("pod_uid", pod["metadata"].get("uid"))
    if phase not in ("Succeeded", "Failed"):
        limit = ctx.settings.converter_timeout_minutes * 60
        if time.time() - float(memo["started"]) > limit:
            memo["result"] = {
                "succeeded": False,
                "reason": conversion.Reason.TIMEOUT.value,
                "message": f"the conversion pod {name} did not end within "
                f"{ctx.settings.converter_timeout_minutes:g} min (it was {phase})",
                "log": await _log(ctx, name),
            }
            return Wait(0, note="conversion timed out; recording it", detail=_detail(memo, name))
        why = _waiting(status)
        note = f"converting the guest: pod {name} {phase}" + (f" ({why})" if why else "")
        return Wait(ctx.settings.poll_seconds, note=note, detail=_detail(memo, name))
    ended = _terminated(status)
    result = conversion.ConversionResult.of(str(ended.get("message") or ""))
    log = await _log(ctx, name)
    if result is None:  # killed before it wrote one: OOM, eviction, a signal
        said = str(ended.get("reason") or phase)
        code = ended.get("exitCode")
        memo["result"] = {
            "succeeded": False,
            "reason": conversion.Reason.POD_FAILED.value,
            "message": f"the conversion pod {name} ended ({said}, exit code {code}) without "
            "a result",
            "log": log,
        }
    else:
        memo["result"] = {**asdict(result), "log": log}
    return Wait(0, note="conversion ended; recording its outcome", detail=_detail(memo, name))


async def _finish(ctx: StepContext, memo: dict[str, Any], name: str) -> Answer:
    """The outcome is remembered: the pod may go (a crash here repeats only this)."""
    objects = await ctx.objects()
    await objects.delete(POD, name)
    result: dict[str, Any] = memo["result"]
    detail = _detail(memo, name)
    if result.get("succeeded"):
        return Done(detail=detail)
    reason = str(result.get("reason") or conversion.Reason.CONVERSION_FAILED.value)
    message = f"guest conversion of VM {ctx.vm.name or ctx.vm.vm_id} failed ({reason}): " + str(
        result.get("message") or "no reason given"
    )
    return Fail(
        error(reason, message, permanent=reason in conversion.PERMANENT_REASONS), detail=detail
    )


def _detail(memo: dict[str, Any], name: str) -> dict[str, object]:
    """What the step shows: the pod, and once it ended its outcome and the end of its log."""
    out: dict[str, object] = {"pod": name}
    result = memo.get("result")
    if result is not None:
        out["outcome"] = "Succeeded" if result.get("succeeded") else "Failed"
        for key in ("os", "seconds", "overlay", "log"):
            if key in result:
                out[key] = result[key]
    return out


async def _log(ctx: StepContext, name: str) -> str:
    objects = await ctx.objects()
    try:
        text = await objects.kube.log(objects.namespace, name, conversion.CONTAINER, tail_lines=400)
    except Exception:  # a log is worth having, never worth failing the step for
        return ""
    return tail(text)


def _container(status: dict[str, Any]) -> dict[str, Any]:
    for c in status.get("containerStatuses") or []:
        if c.get("name") == conversion.CONTAINER:
            return dict(c)
    return {}


def _terminated(status: dict[str, Any]) -> dict[str, Any]:
    return dict((_container(status).get("state") or {}).get("terminated") or {})


def _waiting(status: dict[str, Any]) -> str:
    """Why a pod is not running yet (ErrImagePull, Unschedulable...), in a few words."""
    waiting = (_container(status).get("state") or {}).get("waiting") or {}
    if waiting.get("reason"):
        return str(waiting["reason"])
    for cond in status.get("conditions") or []:
        if cond.get("status") == "False" and cond.get("reason"):
            return f"{cond['reason']}: {cond.get('message', '')}"[:200]
    return ""
