"""What the API answers, typed for its OpenAPI schema: a plan as ``plans.public`` shows it
(alone, with its status, its new migration, or in a page), maps as ``maps.public``, a plan's
VMs and migrations as ``status`` views them, and the error bodies the shared handlers write.

Routes still build the answer as a dict and return it as it is (a ``JSONResponse``, with its
``ETag``), so a model here documents the JSON and is never used to write it: FastAPI neither
filters nor coerces it. The planner's tests validate real answers against these models
(``tests/planner/test_views_routes.py``), which keeps the two together. Unknown keys are
allowed, so a client of an older schema reads a newer answer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, RootModel
from pydantic.alias_generators import to_camel

from shared.payloads import ErrorInfo, MigrationType, PowerState, ResourceRef, Step, StepState
from shared.pipeline import PlanVmPhase
from shared.service.answers import ERRORS
from shared.service.answers import Message as Message  # the shared error bodies, as named here
from shared.service.answers import Problems as Problems
from shared.service.answers import RequestProblem as RequestProblem

PlanPhase = Literal["NotReady", "Ready", "Running", "Succeeded", "Failed", "Canceled"]


class Answer(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class PlanNaming(Answer):
    vm: str = Field(description="Target VM name template.")
    pvc: str = Field(description="PVC name template.")


class PlanLimits(Answer):
    """The plan's limits; one it leaves out is the service's default."""

    max_disks_in_flight: int
    max_disks_in_flight_per_source: int
    max_vms_in_flight: int


class PlanVmSelector(Answer):
    """The filter the plan's VMs were chosen by, as it was given."""

    search: str | None = None
    names: list[str] | None = None
    status: str | None = None
    parent: str | None = None
    exclude_concerns: Literal["Critical", "Warning"] | None = None


class PlanHook(Answer):
    """A hook at one step (``null``, in a VM's entry: none there for that VM)."""

    step: Literal["PreHook", "PostHook"]
    hook: str | None


class PlanVm(Answer):
    """A VM of the plan: its id, or only the name it was given if no VM has that name."""

    id: str | None = None
    name: str | None = None
    target_name: str | None = None
    target_power_state: PowerState | None = None
    convert_guest: bool | None = None
    hooks: list[PlanHook] | None = None


class PlanProblem(Answer):
    path: str = Field(description="Where, in the API's field names.")
    code: str
    severity: Literal["error", "warning"] = Field(description="An error blocks a start.")
    message: str
    vm: str | None = Field(None, description="The VM it concerns, if one.")


class Plan(Answer):
    """A plan: its definition, its validation problems and its phase."""

    id: str
    name: str
    description: str
    source_provider: str = Field(description="The source provider's id.")
    target_provider: str = Field(description="The target provider's id.")
    target_namespace: str
    network_map: str = Field(description="The network map's id.")
    storage_map: str = Field(description="The storage map's id.")
    migration_type: MigrationType
    target_power_state: PowerState
    transfer_network: str | None
    naming: PlanNaming
    limits: PlanLimits
    cutover: AwareDatetime | None = Field(
        description="RFC 3339, in UTC; no source VM is powered off before it. null: at once."
    )
    cutover_revision: int = Field(description="Grows with every change of the cutover.")
    precopy_interval_minutes: int
    convert_guest: bool = Field(
        description="ConvertGuest for every VM (a VM's convertGuest overrides it)."
    )
    hooks: list[PlanHook] = Field(description="Hooks every VM runs (a VM's own replace them).")
    vm_selector: PlanVmSelector | None
    vms: list[PlanVm] = Field(
        description="The plan's first VMs (100 at most), in the order given; the others "
        "are paged by GET /api/v1/plans/{plan}/definition/vms."
    )
    vm_count: int = Field(description="How many VMs the plan has.")
    vms_next: str | None = Field(
        description="The cursor of the VMs after ``vms`` (for /definition/vms); null: "
        "``vms`` lists them all."
    )
    phase: PlanPhase
    archived: bool
    problems: list[PlanProblem]
    ready: bool = Field(description="No problem is an error.")
    validated_at: AwareDatetime | None
    migration_id: str | None = Field(description="The current or last migration's id.")
    revision: int = Field(description="The plan's revision, as its ETag; for If-Match.")
    created_at: AwareDatetime
    updated_at: AwareDatetime


# --- plans with more: their status, their new migration, their current one -----------------


class Progress(Answer):
    completed: int = Field(description="Bytes (or units) done.")
    total: int


class MigrationVms(Answer):
    """A migration's VMs by phase; ``skipped``: an earlier run migrated them."""

    total: int
    pending: int
    running: int
    succeeded: int
    failed: int
    canceled: int
    skipped: int


class Migration(Answer):
    """A run of a plan: its phase, times, VM counts and bytes."""

    id: str
    plan_id: str
    number: int = Field(description="1 for a plan's first run, then 2, 3...")
    phase: PlanPhase
    cancel_requested: bool
    started_at: AwareDatetime | None
    completed_at: AwareDatetime | None
    vms: MigrationVms
    progress: Progress
    revision: int


class PlanStatus(Answer):
    id: str
    name: str
    phase: PlanPhase
    migration: Migration | None = Field(description="The current or last migration.")
    history: list[Migration] = Field(description="The earlier migrations, newest first.")
    revision: int


class PlanWithStatus(Plan):
    """A plan as ``GET`` reads it: with its status."""

    status: PlanStatus


class PlanVmPage(Answer):
    """A page of the VMs of a plan's definition, in the order given."""

    items: list[PlanVm]
    next: str | None = Field(description="The cursor of the next page; null: the last page.")
    total: int = Field(description="How many VMs the plan has.")


class PlanListItem(Plan):
    """A plan of a list: with its current (or last) migration's counts and bytes."""

    migration: Migration | None


class PlanPage(Answer):
    items: list[PlanListItem]
    next: str | None = Field(description="The cursor of the next page; null: the last page.")


class StartedMigration(Answer):
    id: str
    number: int
    vms: int = Field(description="The VMs it migrates.")
    skipped: int = Field(description="VMs an earlier run migrated, left out.")
    started_at: AwareDatetime


class StartedPlan(Plan):
    """A plan just started: with the migration the start made."""

    migration: StartedMigration


class CancelAnswer(Answer):
    migration_id: str
    canceling: list[str] = Field(description="The VMs told to stop (ids).")
    already_finished: list[str] = Field(description="VMs asked for that had ended (ids).")


# --- maps -----------------------------------------------------------------------------------


class SourceRef(Answer):
    """A source network or storage, by id or by name, as the map was given."""

    id: str | None = None
    name: str | None = None


class NetworkTarget(Answer):
    type: Literal["pod", "multus", "ignored"]
    namespace: str | None = None
    name: str | None = None


class NetworkMapEntry(Answer):
    source: SourceRef
    destination: NetworkTarget


class StorageSourceRef(SourceRef):
    type: Literal["glance"] | None = None


class StorageTarget(Answer):
    storage_class: str
    volume_mode: Literal["Filesystem", "Block"] | None = None
    access_mode: (
        Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod"] | None
    ) = None


class StorageMapEntry(Answer):
    source: StorageSourceRef
    destination: StorageTarget


class MapFields(Answer):
    id: str
    name: str
    description: str
    source_provider: str = Field(description="The source provider's id.")
    target_provider: str = Field(description="The target provider's id.")
    problems: list[PlanProblem] = Field(description="What its entries name and is missing.")
    revision: int = Field(description="The map's revision, as its ETag; for If-Match.")
    created_at: AwareDatetime
    updated_at: AwareDatetime


class NetworkMap(MapFields):
    kind: Literal["network"]
    entries: list[NetworkMapEntry]


class StorageMap(MapFields):
    kind: Literal["storage"]
    entries: list[StorageMapEntry]


class NetworkMapPage(Answer):
    items: list[NetworkMap]


class StorageMapPage(Answer):
    items: list[StorageMap]


# --- a plan's VMs -----------------------------------------------------------------------------


class Waiting(Answer):
    """Why a VM waits (to be admitted, or for the cutover), as the orchestrator said it;
    the parts it left out are absent."""

    step: Step
    note: str
    reason: str | None = Field(None, description="shared.payloads.WaitReason, e.g. Cutover.")
    held: int | None = None
    limit: int | None = None
    place: int | None = Field(None, description="Its place in line, from 1.")
    estimated_start: AwareDatetime | None = None
    cutover: AwareDatetime | None = None
    observed_at: AwareDatetime | None = None


class Vm(Answer):
    """A VM of a migration, without its pipeline."""

    id: str
    name: str
    target_name: str
    plan_id: str
    migration_id: str
    phase: PlanVmPhase
    step: Step | None = Field(description="The step it is at.")
    cancel_requested: bool
    started_at: AwareDatetime | None
    completed_at: AwareDatetime | None
    error: ErrorInfo | None
    target_vm: ResourceRef | None
    progress: Progress = Field(description="Bytes copied of its disks.")
    rate_bytes_per_second: int | None
    eta_seconds: int | None
    waiting: Waiting | None
    revision: int


class Task(Answer):
    id: str
    name: str
    state: StepState
    attempt: int
    started_at: AwareDatetime | None
    completed_at: AwareDatetime | None
    progress: Progress
    rate_bytes_per_second: int | None
    eta_seconds: int | None
    observed_at: AwareDatetime | None
    error: ErrorInfo | None


class PipelineStep(Answer):
    name: Step
    state: StepState
    attempt: int
    started_at: AwareDatetime | None
    completed_at: AwareDatetime | None
    progress: Progress
    error: ErrorInfo | None
    detail: dict[str, Any] = Field(description="What the step reported, as it did.")
    tasks: list[Task]


class VmWithPipeline(Vm):
    migration_number: int
    pipeline: list[PipelineStep]


class VmPage(Answer):
    migration_id: str | None = Field(description="null: the plan never started.")
    items: list[Vm]
    next: str | None = Field(description="The cursor of the next page; null: the last page.")
    total: int = Field(description="The VMs of every page (with the phase asked for).")


class MigrationList(Answer):
    items: list[Migration] = Field(description="Newest first.")


# --- errors, as the shared handlers answer them (``shared.service.answers``) ----------------


class Refusal(Answer):
    message: str
    problems: list[PlanProblem]


class NotStartable(Answer):
    detail: Refusal


class StartRefused(RootModel[Problems | NotStartable]):
    """A bad request (``detail`` a list), or a plan validation refuses to start."""


#: The ``ETag`` of an answer that carries a revision, as the OpenAPI schema documents it.
REVISION_TAG = {
    "description": 'The revision, quoted ("12"); send it as If-Match to change it only if '
    "nobody changed it since",
    "schema": {"type": "string"},
}
#: The ``ETag`` of ``GET`` of a plan or a VM: 304 when ``If-None-Match`` is still it.
CONTENT_TAG = {
    "description": "The answer's tag: send it as If-None-Match to be answered 304 if "
    "nothing changed (a plan's also serves as If-Match of PATCH)",
    "schema": {"type": "string"},
}
_ERRORS: dict[int, dict[str, Any]] = {
    304: {
        "description": "Not modified: If-None-Match is the ETag",
        "headers": {"ETag": CONTENT_TAG},
    },
    404: {**ERRORS[404], "description": "No such plan, map, migration or VM"},
    409: {
        **ERRORS[409],
        "description": "The state forbids it: a name taken, a plan running or archived, "
        "nothing left to migrate",
    },
    412: ERRORS[412],
    422: ERRORS[422],
}


def answers(
    ok: int, description: str, *errors: int, tag: dict[str, Any] | None = REVISION_TAG
) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route: its success (with the ``ETag`` it sends, if any) and
    the errors it answers."""
    success: dict[str, Any] = {"description": description}
    if tag is not None:
        success["headers"] = {"ETag": tag}
    return {ok: success, **{code: _ERRORS[code] for code in errors}}
