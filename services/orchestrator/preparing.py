"""The steps before any disk moves: Initialize, PowerOffSource, ConvertOpenstackSnapshot.

Initialize checks again, at the moment the VM's turn comes, what the planner validated
earlier: the source VM still exists with the planned disks and nothing holds it (a locked
disk, a running snapshot), the target namespace exists, and no other VM already has the
target name. It remembers the source's power state, so a failure or a cancel can leave the
source as it was and a target power state of ``auto`` can follow it.

PowerOffSource waits for the plan's cutover time (if it was moved later after the VM was
admitted), then asks the guest to shut down (ACPI), waits up to
``HOIST_ORCHESTRATOR_POWER_OFF_TIMEOUT_SECONDS`` and then forces the VM off; a VM that is
already off is left alone (and will not be powered on after a failure).

Then the disks: the claims and their populators.

Next: services/orchestrator/disks.py
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from kubernetes_asyncio.client.exceptions import ApiException

from services.orchestrator.answers import Answer, Done, Fail, Wait, error
from services.orchestrator.context import StepContext
from services.orchestrator.objects import VIRTUAL_MACHINE
from services.orchestrator.sources.contract import Power
from shared import populator as contract
from shared.errors import RetryLater
from shared.kube import NAMESPACE
from shared.kube.calls import status_message

BLOCKED_LIMIT = 15 * 60.0
"""How long Initialize waits for a source VM that something holds (locked disk...)."""


async def initialize(ctx: StepContext) -> Answer:
    source = await ctx.source()
    now = await source.inspect(ctx.vm)
    if now.disk_ids:
        known = set(now.disk_ids)
        missing = [
            d.disk_id
            for d in ctx.vm.disks
            if d.disk_id not in known and not d.disk_id.endswith("-root")
        ]
        if missing:
            return Fail(
                error(
                    "DiskNotFound",
                    f"the source VM no longer has disk(s) {', '.join(missing)}; validate the "
                    "plan again",
                )
            )
    if now.blockers:
        since = float(ctx.memory.setdefault("blocked_since", time.time()))
        why = "; ".join(now.blockers)
        if time.time() - since > BLOCKED_LIMIT:
            return Fail(
                error(
                    "SourceBusy",
                    f"the source VM is still busy after {BLOCKED_LIMIT / 60:.0f} min: {why}",
                    permanent=False,
                )
            )
        return Wait(15.0, note=f"waiting for the source VM: {why}")
    ctx.memory.pop("blocked_since", None)
    problem = await _check_target(ctx)
    if problem is not None:
        return problem
    ctx.memory.setdefault("source_power", now.power.value)
    return Done(detail={"sourcePowerState": ctx.memory["source_power"]})


async def _check_target(ctx: StepContext) -> Fail | None:
    kube = await ctx.target()
    namespace = ctx.header.target_namespace
    try:
        found = await kube.get(NAMESPACE, namespace)
    except ApiException as exc:
        # The Status message says who was refused what (a missing RBAC rule, say).
        said = status_message(exc)
        raise RetryLater(
            f"cannot read namespace {namespace} ({exc.status}{': ' + said if said else ''}); "
            "retried in 5 s",
            5,
        ) from None
    if found is None:
        return Fail(
            error("NamespaceNotFound", f"the target namespace {namespace!r} does not exist")
        )
    objects = await ctx.objects()
    existing = await objects.get(VIRTUAL_MACHINE, ctx.vm.target_name)
    if existing is not None:
        mine = existing["metadata"].get("labels") or {}
        if mine.get(contract.MIGRATION) != contract.label_value(ctx.migration_id):
            return Fail(
                error(
                    "TargetConflict",
                    f"a VirtualMachine {namespace}/{ctx.vm.target_name} already exists; rename "
                    "the target in the plan or remove it",
                )
            )
    return None


async def power_off(ctx: StepContext) -> Answer:
    source = await ctx.source()
    # Its power alone: Initialize checked the disks and blockers, and this is what each
    # poll of a shutting-down guest reads.
    now = await source.power_state(ctx.vm.vm_id)
    memory = ctx.memory
    if now.power is Power.OFF:
        if memory.get("source_power") == Power.ON.value:
            # Running at Initialize and off now: this step's shutdown took effect, though a
            # crash may have lost its record (the shutdown is sent before the answer that
            # notes it is committed). Teardown must power it back on if the VM fails.
            memory["powered_off_by_hoist"] = True
        return Done(detail={"sourcePowerState": memory.get("source_power", Power.OFF.value)})
    poll = ctx.settings.poll_seconds
    timeout = ctx.settings.power_off_timeout_seconds
    if "shutdown_at" not in memory:
        # Admission waits for the cutover; this holds if it was moved later since.
        now_utc = datetime.now(UTC)
        if ctx.cutover is not None and ctx.cutover > now_utc:
            left = (ctx.cutover - now_utc).total_seconds()
            return Wait(
                min(left, poll * 15),
                note=f"the plan's cutover is at {ctx.cutover:%Y-%m-%d %H:%M:%S} UTC",
            )
        memory["powered_off_by_hoist"] = True
        memory["shutdown_at"] = time.time()
        await source.shutdown(ctx.vm.vm_id)
        return Wait(poll, note="asked the guest to shut down")
    waited = time.time() - float(memory["shutdown_at"])
    if "forced_at" not in memory:
        if waited < timeout:
            return Wait(poll, note=f"waiting for the guest to shut down ({waited:.0f} s)")
        memory["forced_at"] = time.time()
        await source.stop(ctx.vm.vm_id)
        return Wait(poll, note=f"the guest did not shut down in {timeout:.0f} s; forced off")
    if time.time() - float(memory["forced_at"]) > timeout:
        return Fail(
            error(
                "PowerOffFailed",
                f"the source VM is still {now.status} after a forced power-off",
                permanent=False,
            )
        )
    return Wait(poll, note="waiting for the forced power-off")


async def convert(ctx: StepContext) -> Answer:
    source = await ctx.source()
    since = float(ctx.memory.setdefault("convert_started", time.time()))
    conversion = await source.convert(ctx.migration_id, ctx.vm)
    if not conversion.done:
        limit = ctx.settings.snapshot_timeout_seconds
        if time.time() - since > limit:
            return Fail(
                error(
                    "ConversionTimeout",
                    f"the snapshots, volumes and images were not ready in {limit:.0f} s; "
                    f"last waiting for: {conversion.waiting}",
                    permanent=False,
                )
            )
        return Wait(ctx.settings.poll_seconds, note=conversion.waiting)
    ctx.memory["images"] = dict(conversion.images)
    ctx.memory["image_sizes"] = dict(conversion.sizes)
    return Done(detail={"images": dict(conversion.images)})
