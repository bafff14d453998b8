"""What the API answers, typed for its OpenAPI schema: a plan as ``plans.public`` shows it.

Routes still build the answer as a dict and return it as it is (with its ``ETag``), so a
model here documents the JSON and is never used to write it: the planner's tests validate
real answers against these models, which keeps the two together. Unknown keys are
allowed, so a client of an older schema reads a newer answer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from shared.payloads import MigrationType, PowerState

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


class PlanVm(Answer):
    """A VM of the plan: its id, or only the name it was given if no VM has that name."""

    id: str | None = None
    name: str | None = None
    target_name: str | None = None
    target_power_state: PowerState | None = None


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
    vm_selector: PlanVmSelector | None
    vms: list[PlanVm]
    phase: PlanPhase
    archived: bool
    problems: list[PlanProblem]
    ready: bool = Field(description="No problem is an error.")
    validated_at: AwareDatetime | None
    migration_id: str | None = Field(description="The current or last migration's id.")
    revision: int = Field(description="The plan's revision, as its ETag; for If-Match.")
    created_at: AwareDatetime
    updated_at: AwareDatetime
