"""The shape of one VM's pipeline: which steps run in which order, and what a step answers.

A step handler is called again and again (every poll, after every crash) until it answers
``Done``; it never blocks for long. Everything it did is found again on the next call: names
are deterministic, objects are created-or-got, and what it must remember between calls goes
into ``memory`` (persisted with the VM). Its answer:

- ``Done``: go on to the next step now;
- ``Wait``: call me again after ``seconds`` (with progress and a note for the API);
- ``Fail``: the VM fails; ``error.permanent`` says whether a re-run of the plan can help.

Handlers raise ``Retry`` for a temporary trouble (an API down, a conflict): the runner waits
``delay`` seconds and calls again, and the step shows the message meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.payloads import ErrorInfo, Step, StepProgress, StepState

OVIRT_STEPS: tuple[Step, ...] = (
    Step.INITIALIZE,
    Step.POWER_OFF_SOURCE,
    Step.DISK_ALLOCATION,
    Step.DISK_TRANSFER,
    Step.VIRTUAL_MACHINE_CREATION,
    Step.CLEANUP,
)
OPENSTACK_STEPS: tuple[Step, ...] = (
    Step.INITIALIZE,
    Step.POWER_OFF_SOURCE,
    Step.CONVERT_OPENSTACK_SNAPSHOT,
    Step.DISK_ALLOCATION,
    Step.DISK_TRANSFER,
    Step.VIRTUAL_MACHINE_CREATION,
    Step.CLEANUP,
)


def steps_of(source_type: str) -> tuple[Step, ...]:
    return OPENSTACK_STEPS if source_type == "openstack" else OVIRT_STEPS


def next_step(source_type: str, step: Step) -> Step:
    """The step after ``step`` (``Completed`` after the last)."""
    order = steps_of(source_type)
    index = order.index(step)
    return order[index + 1] if index + 1 < len(order) else Step.COMPLETED


# VM phases (``vms.phase``)
QUEUED = "Queued"
RUNNING = "Running"
FAILING = "Failing"  # the error is known; the VM's objects are being removed
CANCELING = "Canceling"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
CANCELED = "Canceled"
ACTIVE_PHASES = (QUEUED, RUNNING, FAILING, CANCELING)
FINAL_PHASES = (SUCCEEDED, FAILED, CANCELED)


@dataclass
class Task:
    """One task of a step (a disk), as the handler sees it now."""

    task: str
    state: StepState
    progress: StepProgress | None = None
    error: ErrorInfo | None = None
    detail: dict[str, object] = field(default_factory=dict)


@dataclass
class Done:
    progress: StepProgress | None = None
    detail: dict[str, object] = field(default_factory=dict)
    tasks: list[Task] = field(default_factory=list)


@dataclass
class Wait:
    seconds: float
    note: str = ""
    progress: StepProgress | None = None
    detail: dict[str, object] = field(default_factory=dict)
    tasks: list[Task] = field(default_factory=list)


@dataclass
class Fail:
    error: ErrorInfo
    tasks: list[Task] = field(default_factory=list)


Answer = Done | Wait | Fail


class Retry(Exception):
    """Temporary trouble: call the step again after ``delay`` seconds."""

    def __init__(self, message: str, delay: float = 5.0) -> None:
        super().__init__(message)
        self.message = message
        self.delay = delay


def error(reason: str, message: str, *, permanent: bool = True) -> ErrorInfo:
    return ErrorInfo(reason=reason, message=message, permanent=permanent)
