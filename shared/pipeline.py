"""A VM's pipeline as every service agrees on it: the steps per source, in order, and the
phases a VM and its steps go through.

Why one module: the planner freezes the step list into ``plan.started`` and shows it, the
orchestrator runs it, and both spell phases in Python and in SQL. Declared twice, the lists
drifted silently (the planner fell back to oVirt's steps for a source it did not know);
declared here, a source without a pipeline is an error at the first call.

The phase tuples keep the order today's SQL spells them in: bound into ``text()`` with
``shared.db.engine.values()`` they are rendered inline in that order, so the statement text
(and a partial index whose predicate names them) stays as it is.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum
from types import MappingProxyType

from shared.payloads import ProviderType, Step, StepState

__all__ = [
    "CONVERT_BEFORE",
    "COPIED_AFTER",
    "DOWNTIME_STARTS",
    "FINAL_STEP_STATES",
    "HOOK_STEPS",
    "PER_DISK_STEPS",
    "PLAN_VM_FINAL",
    "PLAN_VM_IN_FLIGHT",
    "POSITION",
    "STEPS",
    "VM_ACTIVE",
    "VM_FINAL",
    "VM_WAITING",
    "WARM_STEPS",
    "WORKING_STEP_STATES",
    "PlanVmPhase",
    "VmPhase",
    "next_step",
    "steps_of",
]

#: The cold pipeline of each source that Hoist migrates from, in the order the steps run.
#: A KubeVirt provider is a migration *target* only: it has no pipeline.
STEPS: Mapping[ProviderType, tuple[Step, ...]] = MappingProxyType(
    {
        ProviderType.OVIRT: (
            Step.INITIALIZE,
            Step.POWER_OFF_SOURCE,
            Step.DISK_ALLOCATION,
            Step.DISK_TRANSFER,
            Step.VIRTUAL_MACHINE_CREATION,
            Step.CLEANUP,
        ),
        ProviderType.OPENSTACK: (
            Step.INITIALIZE,
            Step.POWER_OFF_SOURCE,
            Step.CONVERT_OPENSTACK_SNAPSHOT,
            Step.DISK_ALLOCATION,
            Step.DISK_TRANSFER,
            Step.VIRTUAL_MACHINE_CREATION,
            Step.CLEANUP,
        ),
    }
)

#: The warm pipeline of each source that can go warm: the disks are copied while the source
#: VM runs (WarmPrecopy, again every ``precopy_interval_minutes`` until the cutover), then
#: the VM is powered off and only what changed since the last precopy is copied (FinalCopy).
#: WarmPrecopy's first call also makes the claims and CRs (DiskAllocation's work).
WARM_STEPS: Mapping[ProviderType, tuple[Step, ...]] = MappingProxyType(
    {
        ProviderType.OVIRT: (
            Step.INITIALIZE,
            Step.WARM_PRECOPY,
            Step.POWER_OFF_SOURCE,
            Step.FINAL_COPY,
            Step.VIRTUAL_MACHINE_CREATION,
            Step.CLEANUP,
        ),
    }
)

#: Steps whose tasks are the VM's disks (task id = disk id).
PER_DISK_STEPS: frozenset[Step] = frozenset(
    {Step.DISK_ALLOCATION, Step.DISK_TRANSFER, Step.WARM_PRECOPY, Step.FINAL_COPY}
)

#: Steps whose end means every disk of the VM is copied: its disk slots are free.
COPIED_AFTER: frozenset[Step] = frozenset({Step.DISK_TRANSFER, Step.FINAL_COPY})

#: Every step's position (``Step``'s declaration order), so that steps sort where they run
#: even in a list that mixes sources, or names a step this process did not expect.
POSITION: Mapping[str, int] = MappingProxyType({s.value: i for i, s in enumerate(Step)})


#: Where the opt-in ConvertGuest runs: after the last disk step (every volume is filled and
#: handed over), before the VirtualMachine exists (nothing may boot a disk being converted).
CONVERT_BEFORE = Step.VIRTUAL_MACHINE_CREATION

#: Where a VM's hooks run: PreHook right before PowerOffSource (the source VM still runs and
#: is reachable; warm, that is at the cutover, after the last precopy), PostHook right
#: after VirtualMachineCreation (the target VM exists, and runs if it is to run).
#: The steps at which a warm VM's downtime can begin: its pre hook (which may stop the
#: application) or, without one, the final power-off. Either takes the VM's slot.
DOWNTIME_STARTS: frozenset[Step] = frozenset({Step.PRE_HOOK, Step.POWER_OFF_SOURCE})

HOOK_STEPS: Mapping[Step, tuple[Step, int]] = MappingProxyType(
    {Step.PRE_HOOK: (Step.POWER_OFF_SOURCE, 0), Step.POST_HOOK: (Step.VIRTUAL_MACHINE_CREATION, 1)}
)


def steps_of(
    source: ProviderType | str,
    warm: bool = False,
    convert: bool = False,
    hooks: Collection[Step] = (),
) -> tuple[Step, ...]:
    """The steps a VM from ``source`` runs (``warm``: its warm pipeline; ``convert``: with
    ConvertGuest, the VM's ``PlannedVm.convert_guest``; ``hooks``: the steps of its
    ``PlannedVm.hooks``). ``ValueError`` for a KubeVirt or unknown source, or a warm one
    that cannot go warm: guessing a pipeline would run the wrong steps against a source.

    ConvertGuest and the hooks are per-VM options, so they are not in the tables: a VM
    without one has no such step at all (no row, no event, nothing to skip), and one with
    it has it where ``CONVERT_BEFORE`` and ``HOOK_STEPS`` put it, in every source's cold
    and warm pipeline alike."""
    table = WARM_STEPS if warm else STEPS
    try:
        steps = table[ProviderType(source)]
    except (KeyError, ValueError):
        what = "a warm migration source" if warm else "a migration source"
        raise ValueError(f"{source!r} is not {what}: it has no pipeline") from None
    unknown = [h for h in hooks if h not in HOOK_STEPS]
    if unknown:
        raise ValueError(f"{', '.join(map(str, unknown))} is not a hook step")
    if convert:
        at = steps.index(CONVERT_BEFORE)
        steps = (*steps[:at], Step.CONVERT_GUEST, *steps[at:])
    for hook in sorted(set(hooks), key=lambda s: POSITION[s.value]):
        anchor, after = HOOK_STEPS[hook]
        at = steps.index(anchor) + after
        steps = (*steps[:at], hook, *steps[at:])
    return steps


def next_step(
    source: ProviderType | str,
    step: Step,
    warm: bool = False,
    convert: bool = False,
    hooks: Collection[Step] = (),
) -> Step:
    """The step after ``step`` (``Completed`` after the last); ``ValueError`` when ``step``
    is not one of the source's steps."""
    order = steps_of(source, warm, convert, hooks)
    if step not in order:
        raise ValueError(f"{step} is not a step of {source}'s pipeline")
    index = order.index(step)
    return order[index + 1] if index + 1 < len(order) else Step.COMPLETED


#: Step (and task) states after which nothing more happens to that attempt.
FINAL_STEP_STATES: tuple[StepState, ...] = (
    StepState.COMPLETED,
    StepState.FAILED,
    StepState.SKIPPED,
    StepState.CANCELED,
)
#: Step (and task) states whose progress still moves.
WORKING_STEP_STATES: tuple[StepState, ...] = (StepState.PENDING, StepState.RUNNING)


class VmPhase(StrEnum):
    """A VM's phase in the orchestrator (``orchestrator.vms.phase``)."""

    QUEUED = "Queued"
    RUNNING = "Running"
    FAILING = "Failing"  # the error is known; the VM's objects are being removed
    CANCELING = "Canceling"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELED = "Canceled"


#: Unfinished: the runner still has work for the VM (the ``vms_due`` index's predicate).
VM_ACTIVE: tuple[VmPhase, ...] = (
    VmPhase.QUEUED,
    VmPhase.RUNNING,
    VmPhase.FAILING,
    VmPhase.CANCELING,
)
#: Phases in which a VM can still wait for admission (the ``vms_waiting`` index's predicate).
VM_WAITING: tuple[VmPhase, ...] = (VmPhase.QUEUED, VmPhase.RUNNING)
VM_FINAL: tuple[VmPhase, ...] = (VmPhase.SUCCEEDED, VmPhase.FAILED, VmPhase.CANCELED)


class PlanVmPhase(StrEnum):
    """A VM's phase as the planner keeps it (``planner.vms.phase``) and the status API
    shows it."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELED = "Canceled"


PLAN_VM_FINAL: tuple[PlanVmPhase, ...] = (
    PlanVmPhase.SUCCEEDED,
    PlanVmPhase.FAILED,
    PlanVmPhase.CANCELED,
)
PLAN_VM_IN_FLIGHT: tuple[PlanVmPhase, ...] = (PlanVmPhase.PENDING, PlanVmPhase.RUNNING)
