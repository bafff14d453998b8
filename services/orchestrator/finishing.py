"""VirtualMachineCreation, Cleanup, and the teardown of a failed or canceled VM.

VirtualMachineCreation creates the ``kubevirt.io/v1`` VirtualMachine from the source's
configuration and then makes it the owner of its claims: deleting the migrated VM deletes its
disks, as a VM with data volume templates does.

Cleanup (after success) removes what only the migration needed: the consumer pod, the
populator CRs, the copied Secret, and on OpenStack the temporary snapshots, volumes and
images. Teardown (after a failure or a cancel) removes everything this VM of this
migration created, selected by the labels ``hoist.io/migration`` and ``hoist.io/vm`` (never
another VM's objects), and powers the source VM back on when Hoist powered it off. With
``HOIST_ORCHESTRATOR_KEEP_FAILED`` a failed VM's claims and VM are kept for inspection.

The VirtualMachine itself is built by ``virtualmachines.py``.

Next: services/orchestrator/virtualmachines.py
"""

from __future__ import annotations

import asyncio
import logging

from services.orchestrator import naming, precopy
from services.orchestrator.answers import Answer, Done, Wait
from services.orchestrator.context import StepContext
from services.orchestrator.manifests import owner_reference
from services.orchestrator.objects import (
    CLEANUP_ORDER,
    CONFIG_MAP,
    JOB,
    POD,
    POPULATORS,
    PVC,
    SECRET,
    VIRTUAL_MACHINE,
)
from services.orchestrator.sources.contract import Power, SourceError
from services.orchestrator.virtualmachines import virtual_machine
from shared.errors import RetryLater
from shared.payloads import PowerState

log = logging.getLogger("hoist.orchestrator.finishing")

_TEMPORARY = (JOB, POD, CONFIG_MAP, *POPULATORS.values(), SECRET)
"""What only the migration needed (the claims and the VirtualMachine stay), consumers first
(a hook's Job before the pods it would otherwise make again)."""

CLEANUP_RECHECK_SECONDS = 0.5
"""Cleanup looks again this soon at objects still terminating after their deletion, and
later each time (up to 5 s), so a long grace period still fits in its attempts."""

TEARDOWN_ATTEMPTS = 30
"""A teardown that keeps failing (a source that stays unreachable) gives up after this many
tries, about 5 minutes, and says in the VM's error what it left behind."""


def should_run(ctx: StepContext) -> bool:
    wanted = ctx.vm.target_power_state or ctx.header.target_power_state
    if wanted is PowerState.ON:
        return True
    if wanted is PowerState.OFF:
        return False
    return ctx.memory.get("source_power") == Power.ON.value


async def create_vm(ctx: StepContext) -> Answer:
    objects = await ctx.objects()
    claims = {d.disk_id: d.pvc_name for d in ctx.vm.disks}
    body = virtual_machine(ctx.header, ctx.vm, claims, running=should_run(ctx))
    created = await objects.ensure(
        VIRTUAL_MACHINE, body, migration_id=ctx.migration_id, vm_id=ctx.vm.vm_id
    )
    owner = owner_reference(created)
    for disk in ctx.vm.disks:
        claim = await objects.get(PVC, disk.pvc_name)
        if claim is None:
            continue
        owners = claim["metadata"].get("ownerReferences") or []
        if not any(o.get("uid") == owner["uid"] for o in owners):
            await objects.patch(
                PVC, disk.pvc_name, {"metadata": {"ownerReferences": [*owners, owner]}}
            )
    meta = created["metadata"]
    ctx.memory["target_vm"] = {
        "namespace": meta["namespace"],
        "name": meta["name"],
        "uid": meta["uid"],
    }
    return Done(detail={"virtualMachine": f"{meta['namespace']}/{meta['name']}"})


async def cleanup(ctx: StepContext) -> Answer:
    """Remove what only the migration needed. The VM is migrated by now: trouble here (a
    source that went away) never fails it; after ``TEARDOWN_ATTEMPTS`` tries the step ends
    and its detail names what was left behind."""
    attempts = int(ctx.memory.get("cleanup_attempts", 0)) + 1
    ctx.memory["cleanup_attempts"] = attempts
    problems: list[str] = []
    left = 0
    try:
        left = await _remove_temporary(ctx)
    except RetryLater as exc:
        problems.append(f"target cluster: {exc.message}")
    try:
        source = await ctx.source()
        await source.remove_artifacts(ctx.migration_id, ctx.vm)
        if await precopy.ending(ctx):
            return Wait(1.0, note="waiting for the last backup of the source VM to end")
        problems += await precopy.release(ctx)  # a warm VM's checkpoints
    except (SourceError, RetryLater) as exc:
        problems.append(f"source: {exc.message}")
    if attempts < TEARDOWN_ATTEMPTS:
        if problems:
            return Wait(10.0, note="; ".join(problems))
        if left:
            # Still terminating (finalizers, a pod's grace period): the next call confirms.
            later = min(5.0, CLEANUP_RECHECK_SECONDS * attempts)
            return Wait(later, note=f"removing {left} temporary object(s)")
    if left:
        problems.append(f"{left} object(s) still terminating")
    return Done(detail={"leftBehind": problems} if problems else {})


async def _remove_temporary(ctx: StepContext) -> int:
    """Delete what only the migration needed; how many objects are still there after.

    The Job first (its pods would otherwise be made again), then the other kinds at once;
    most objects have no finalizer and are gone as soon as they are deleted, so one more
    look in the same call usually ends the step without waiting for another."""
    objects = await ctx.objects()
    selector = naming.vm_selector(ctx.migration_id, ctx.vm.vm_id)
    counts = [await objects.delete_selected(_TEMPORARY[0], selector)]
    rest = _TEMPORARY[1:]
    counts += await asyncio.gather(*(objects.delete_selected(k, selector) for k in rest))
    # Looked at again: only the kinds that had something to delete.
    again = [k for k, n in zip(_TEMPORARY, counts, strict=True) if n]
    found = await asyncio.gather(*(objects.list(k, selector) for k in again))
    return sum(len(f) for f in found)


async def teardown(ctx: StepContext, *, keep: bool) -> tuple[Answer, list[str]]:
    """Remove this VM's objects and restore the source; ``(answer, what was left behind)``.

    Each part is tried on every call, so one that fails (the source is unreachable) does not
    keep the others from being done; after ``TEARDOWN_ATTEMPTS`` calls the VM is finished
    anyway and the leftovers are named."""
    attempts = int(ctx.memory.get("teardown_attempts", 0)) + 1
    ctx.memory["teardown_attempts"] = attempts
    problems: list[str] = []
    remaining = 0
    try:
        objects = await ctx.objects()
        selector = naming.vm_selector(ctx.migration_id, ctx.vm.vm_id)
        kinds = [*_TEMPORARY]
        if not keep:
            kinds = [VIRTUAL_MACHINE, *CLEANUP_ORDER]
        for kind in kinds:
            remaining += await objects.delete_selected(kind, selector)
    except RetryLater as exc:
        problems.append(f"target cluster: {exc.message}")
    try:
        source = await ctx.source()
        await source.remove_artifacts(ctx.migration_id, ctx.vm)
        problems += await precopy.release(ctx)  # a warm VM's backup and checkpoints
        if (
            ctx.memory.get("powered_off_by_hoist")
            and ctx.memory.get("source_power") == Power.ON.value
        ):
            now = await source.inspect(ctx.vm)
            if now.power is Power.OFF:
                await source.start(ctx.vm.vm_id)
                ctx.memory["restarted_source"] = True
            elif now.power is Power.OTHER and not ctx.memory.get("restarted_source"):
                # Still powering down from our shutdown: start it once it is off.
                problems.append(f"source: the VM is {now.status}; powering it on when it is off")
    except (SourceError, RetryLater) as exc:
        problems.append(f"source: {exc.message}")
    if problems and attempts < TEARDOWN_ATTEMPTS:
        return Wait(10.0, note="; ".join(problems)), problems
    if remaining and attempts < TEARDOWN_ATTEMPTS:
        return Wait(1.0, note=f"removing {remaining} object(s)"), []
    if remaining:
        problems.append(f"{remaining} object(s) still terminating")
    return Done(), problems
