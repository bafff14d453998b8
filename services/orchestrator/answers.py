"""What a step handler answers the runner, and how it reports trouble.

A step handler is called again and again (every poll, after every crash) until it answers
``Done``; it never blocks for long. Everything it did is found again on the next call: names
are deterministic, objects are created-or-got, and what it must remember between calls goes
into ``memory`` (persisted with the VM). Its answer:

- ``Done``: go on to the next step now;
- ``Wait``: call me again after ``seconds`` (with progress and a note for the API);
- ``Fail``: the VM fails; ``error.permanent`` says whether a re-run of the plan can help.

Which steps run, in which order, is not said here but in ``shared.pipeline`` (the planner
shows the same list). Trouble is raised in the shared vocabulary (``shared.errors``), which
the runner sorts once for every step: a handler raises ``RetryLater`` for a temporary
trouble (an API down, an object still being deleted), and the runner waits ``delay``
seconds and calls again, the step showing the message meanwhile; a ``PermanentError``
(an object Hoist did not make in the way, one the API server refuses) fails the VM with
its ``reason``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.payloads import ErrorInfo, StepProgress, StepState


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
    #: The failed step's detail (ConvertGuest: the conversion pod's log and outcome).
    detail: dict[str, object] = field(default_factory=dict)


Answer = Done | Wait | Fail


def error(reason: str, message: str, *, permanent: bool = True) -> ErrorInfo:
    """A step's error as the VM records it (``permanent``: a re-run cannot help)."""
    return ErrorInfo(reason=reason, message=message, permanent=permanent)
