"""What the orchestrator's API answers, typed for its OpenAPI document (``api`` builds it).

The routes send the dicts they build as they are, so a model here documents the JSON and
never rewrites it; the fuzz test (``tests/test_fuzz.py``) and the service's tests check real
answers against these schemas. Unknown keys are allowed (a newer answer, an older client).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from shared.pipeline import VmPhase
from shared.service.answers import Answer


class Parts(Answer):
    received: int
    total: int | None


class Migration(Answer):
    id: str
    planId: str
    planName: str | None
    source: str | None = Field(description="The source provider's id.")
    target: str | None = Field(description="The target provider's id.")
    targetNamespace: str | None
    parts: Parts = Field(description="Parts of the migration's definition received so far.")
    vmsTotal: int | None
    vms: dict[str, int] = Field(description="VMs per phase.")
    cancelRequested: bool | None
    createdAt: str | None


class MigrationList(Answer):
    items: list[Migration] = Field(description="Newest first.")


class Vm(Answer):
    vmId: str
    name: str | None
    targetName: str | None
    phase: VmPhase
    step: str | None
    error: dict[str, Any] | None
    cancelRequested: bool | None
    disksInFlight: int | None
    holdsVmSlot: bool | None
    admittedAt: str | None
    releasedAt: str | None
    sourcePowerState: str | None
    nextRunAt: str | None
    leasedBy: str | None
    startedAt: str | None
    finishedAt: str | None


class MigrationWithVms(Migration):
    items: list[Vm] = Field(description="In the plan's order.")


class Progress(Answer):
    completed: int | None
    total: int | None


class StepRow(Answer):
    state: str
    startedAt: str | None
    completedAt: str | None
    progress: Progress | None
    error: dict[str, Any] | None
    detail: dict[str, Any] | None


class Task(StepRow):
    task: str


class Step(Answer):
    name: str
    tasks: list[Task]
    state: str | None = None
    startedAt: str | None = None
    completedAt: str | None = None
    progress: Progress | None = None
    error: dict[str, Any] | None = None
    detail: dict[str, Any] | None = None


class Objects(Answer):
    selector: str = Field(description="The label selector of every object made for the VM.")
    claims: list[str | None]
    virtualMachine: Any = Field(description="The target VirtualMachine, once made.")


class VmWithPipeline(Vm):
    pipeline: list[Step]
    objects: Objects
