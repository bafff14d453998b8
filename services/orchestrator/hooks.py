"""PreHook and PostHook: the user's hook, run as a Job in the target namespace.

A VM has these steps only when the plan gave it a hook for them (``PlannedVm.hooks``;
``shared.pipeline.HOOK_STEPS`` puts them in its pipeline): PreHook right before
PowerOffSource, the source VM still running (warm: at the cutover, after the last precopy),
PostHook right after VirtualMachineCreation. What the Job looks like is
``hookmanifests.py``; how a step call goes, across calls and crashes, is ConvertGuest's:

1. no Job yet: create the ConfigMap and the Job (create-or-get by their deterministic
   name: a call repeated after a crash, by this replica or another, adopts the Job the
   first one made and never starts a second run of the hook) and wait;
2. the Job runs: wait (a short poll); the Job's own ``activeDeadlineSeconds`` and
   ``backoffLimit`` bound it, and this step fails it too if the Job has not ended a while
   after its deadline (a cluster without a Job controller);
3. the Job ended (condition ``Complete`` or ``Failed``): read the logs of its pods, one
   per try, and *remember* the outcome (``memory["hooks"][step]["result"]``) before
   anything else;
4. the outcome is remembered: delete the Job (its pods go with it) and the ConfigMap,
   answer Done or Fail (``HookFailed``, ``HookTimeout``).

The step's detail carries ``job``, ``hook``, ``image``, and once ended ``outcome``,
``tries`` and ``log``: the orchestrator keeps them in its step row, the planner in its
status, so ``hoist plans logs`` shows a hook's output after its Job is gone.

A failed PreHook fails the VM before PowerOffSource touched the source: the teardown finds
``powered_off_by_hoist`` unset and leaves the source running as it was. A cancel while a
hook runs deletes its Job (the teardown selects Jobs and ConfigMaps by the VM's labels).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from services.orchestrator import hookmanifests
from services.orchestrator.answers import Answer, Done, Fail, Wait, error
from services.orchestrator.context import StepContext
from services.orchestrator.objects import CONFIG_MAP, JOB, POD
from shared import hooks
from shared import populator as contract
from shared.payloads import HookSpec, Step
from shared.populator import tail

MAX_JOBS = 3
"""A Job that vanishes before it ended (deleted by someone) is made again, this often in
all; then the step fails (``HookJobLost``)."""
GRACE_SECONDS = 120.0
"""How long after its deadline a Job that has not ended is given before the step calls
it timed out itself (the Job controller should have ended it at the deadline)."""
LOG_LINES = 400
POD_LOG_BYTES = 8192
# The Job condition reason and pod phase words, named so that no SQL-looking literal spells
# them (tests/shared/test_pipeline.py keeps phases out of SQL).
JOB_FAILED = "Failed"
POD_PENDING = "Pending"


async def pre_hook(ctx: StepContext) -> Answer:
    now = datetime.now(UTC)
    if ctx.cutover is not None and ctx.cutover > now and not _memo(ctx, Step.PRE_HOOK):
        # Admission waits for the cutover; this holds if it was moved later since, so the
        # application is not stopped long before its VM goes down.
        left = (ctx.cutover - now).total_seconds()
        return Wait(
            min(left, ctx.settings.poll_seconds * 15),
            note=f"the plan's cutover is at {ctx.cutover:%Y-%m-%d %H:%M:%S} UTC",
        )
    return await run(ctx, Step.PRE_HOOK)


async def post_hook(ctx: StepContext) -> Answer:
    return await run(ctx, Step.POST_HOOK)


def _memo(ctx: StepContext, step: Step) -> dict[str, Any]:
    every: dict[str, Any] = ctx.memory.setdefault("hooks", {})
    memo: dict[str, Any] = every.setdefault(step.value, {})
    return memo


async def run(ctx: StepContext, step: Step) -> Answer:
    hook = hooks.hooks_of(ctx.vm).get(step)
    if hook is None:  # a pipeline has the step only with a hook: a bug, not the user's
        return Fail(error("HookMissing", f"VM {ctx.vm.vm_id} has no {step.value} hook"))
    memo = _memo(ctx, step)
    name = hookmanifests.name(ctx.header, ctx.vm, step)
    if memo.get("result") is not None:
        return await _finish(ctx, memo, name, hook)
    objects = await ctx.objects()
    job = await objects.get(JOB, name)
    if job is not None and _ours(ctx, job):
        return await _follow(ctx, memo, name, hook, job)
    if int(memo.get("jobs", 0)) >= MAX_JOBS:
        return Fail(
            error(
                hooks.Reason.LOST,
                f"the Job {name} of hook {hook.name!r} disappeared before it ended, "
                f"{MAX_JOBS} times",
                permanent=False,
            ),
            detail=_detail(memo, name, hook),
        )
    await objects.ensure(
        CONFIG_MAP,
        hookmanifests.config_map(ctx.header, ctx.vm, step, hook),
        migration_id=ctx.migration_id,
        vm_id=ctx.vm.vm_id,
    )
    settings = ctx.settings
    body = hookmanifests.job(
        ctx.header,
        ctx.vm,
        step,
        hook,
        cpu_request=settings.hook_cpu_request,
        memory_request=settings.hook_memory_request,
        cpu_limit=settings.hook_cpu_limit,
        memory_limit=settings.hook_memory_limit,
    )
    created = await objects.ensure(JOB, body, migration_id=ctx.migration_id, vm_id=ctx.vm.vm_id)
    uid = created["metadata"].get("uid")
    if memo.get("job_uid") != uid:  # a Job this call made, not one an earlier call made
        memo["jobs"] = int(memo.get("jobs", 0)) + 1
        memo["job_uid"] = uid
        memo["started"] = time.time()
    return Wait(
        settings.poll_seconds,
        note=f"hook {hook.name!r}: Job {name} created",
        detail=_detail(memo, name, hook),
    )


def _ours(ctx: StepContext, obj: dict[str, Any]) -> bool:
    """The Job of that name this VM of this migration made (``ensure`` sorts out others)."""
    have = obj["metadata"].get("labels") or {}
    want = contract.object_labels(ctx.plan_id, ctx.migration_id, ctx.vm.vm_id)
    return all(have.get(k) == want[k] for k in (contract.MIGRATION, contract.VM))


def _ended(job: dict[str, Any]) -> dict[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return dict(cond)
    return None


async def _follow(
    ctx: StepContext, memo: dict[str, Any], name: str, hook: HookSpec, job: dict[str, Any]
) -> Answer:
    memo.setdefault("started", time.time())
    memo.setdefault("job_uid", job["metadata"].get("uid"))
    memo.setdefault("jobs", 1)  # adopted: made by a call whose answer was lost
    status = job.get("status") or {}
    ended = _ended(job)
    tries = int(status.get("failed") or 0) + int(status.get("succeeded") or 0)
    if ended is None:
        waited = time.time() - float(memo["started"])
        if waited <= hook.deadline_seconds + GRACE_SECONDS:
            active = int(status.get("active") or 0)
            what = "running" if active else "starting"
            note = f"hook {hook.name!r}: Job {name} {what}"
            if tries:
                note += f" (try {tries + 1} of {hook.retries + 1})"
            if active:
                # Read as it runs: a pod the Job controller deletes at the deadline takes
                # its log along, and what a timed-out hook was doing is what one wants.
                newest = await _collect(ctx, name, memo)
                if newest and newest != "Running":
                    note += f": pod {newest}"  # e.g. Pending (ErrImagePull)
            return Wait(ctx.settings.poll_seconds, note=note, detail=_detail(memo, name, hook))
        ended = {
            "type": "Failed",
            "reason": "DeadlineExceeded",
            "message": f"not ended {waited:.0f} s after it was created",
        }
    succeeded = ended["type"] == "Complete"
    if succeeded:
        reason, message = "", ""
    elif ended.get("reason") == "DeadlineExceeded":
        reason = hooks.Reason.TIMEOUT.value
        message = (
            f"hook {hook.name!r} did not end within its deadline of {hook.deadline_seconds} s "
            f"(Job {name}: {ended.get('message') or 'DeadlineExceeded'})"
        )
    else:
        reason = hooks.Reason.FAILED.value
        message = (
            f"hook {hook.name!r} failed after {tries} tr{'y' if tries == 1 else 'ies'} "
            f"(Job {name}: {ended.get('reason') or JOB_FAILED}: {ended.get('message') or ''})"
        )
    memo["result"] = {
        "succeeded": succeeded,
        "reason": reason,
        "message": message,
        "tries": tries,
        "log": await _logs(ctx, name, memo),
    }
    memo.pop("logs", None)
    return Wait(0, note=f"hook {hook.name!r} ended; recording it", detail=_detail(memo, name, hook))


async def _finish(ctx: StepContext, memo: dict[str, Any], name: str, hook: HookSpec) -> Answer:
    """The outcome is remembered: the Job and its ConfigMap may go (a crash here repeats
    only this)."""
    objects = await ctx.objects()
    await objects.delete(JOB, name)
    await objects.delete(CONFIG_MAP, name)
    result: dict[str, Any] = memo["result"]
    detail = _detail(memo, name, hook)
    if result.get("succeeded"):
        return Done(detail=detail)
    reason = str(result.get("reason") or hooks.Reason.FAILED.value)
    # A re-run may help (the service the hook talks to was down); the plan can be run again.
    return Fail(error(reason, str(result.get("message") or ""), permanent=False), detail=detail)


def _detail(memo: dict[str, Any], name: str, hook: HookSpec) -> dict[str, object]:
    out: dict[str, object] = {"job": name, "hook": hook.name, "image": hook.image}
    result = memo.get("result")
    if result is not None:
        out["outcome"] = "Succeeded" if result.get("succeeded") else "Failed"
        out["tries"] = result.get("tries", 0)
        out["log"] = result.get("log", "")
    return out


async def _collect(ctx: StepContext, name: str, memo: dict[str, Any]) -> str:
    """The logs of the Job's pods as they are now, into ``memo["logs"]`` (a pod gone keeps
    what was read of it last); how the newest pod is (``Running``, ``Pending
    (ErrImagePull)``...), or "" when there is none."""
    objects = await ctx.objects()
    try:
        pods = await objects.list(POD, f"batch.kubernetes.io/job-name={name}")
    except Exception:  # a log is worth having, never worth failing the step for
        return ""
    pods.sort(key=lambda p: str(p["metadata"].get("creationTimestamp") or ""))
    seen: dict[str, Any] = memo.setdefault("logs", {})
    for pod in pods:
        pod_name = pod["metadata"]["name"]
        try:
            text = await objects.kube.log(
                objects.namespace, pod_name, hooks.CONTAINER, tail_lines=LOG_LINES
            )
        except Exception:
            text = str((seen.get(pod_name) or {}).get("text") or "")
        seen[pod_name] = {
            "at": str(pod["metadata"].get("creationTimestamp") or ""),
            "how": _how(pod),
            "text": tail(text, POD_LOG_BYTES),
        }
    return _how(pods[-1]) if pods else ""


async def _logs(ctx: StepContext, name: str, memo: dict[str, Any]) -> str:
    """Every try's log, oldest first, each under a line naming its pod and how it ended."""
    await _collect(ctx, name, memo)
    seen: dict[str, Any] = memo.get("logs") or {}
    parts = [
        f"--- pod {pod}: {one['how']} ---\n{str(one['text']).rstrip()}\n"
        for pod, one in sorted(seen.items(), key=lambda item: (item[1]["at"], item[0]))
    ]
    return tail("".join(parts))


def _how(pod: dict[str, Any]) -> str:
    status = pod.get("status") or {}
    for c in status.get("containerStatuses") or []:
        ended = (c.get("state") or {}).get("terminated")
        if ended:
            return f"{ended.get('reason') or 'Terminated'}, exit code {ended.get('exitCode')}"
        waiting = ((c.get("state") or {}).get("waiting") or {}).get("reason")
        if waiting:
            return f"{status.get('phase') or POD_PENDING} ({waiting})"
    return str(status.get("phase") or "Unknown")
