"""Payloads of Hoist's events: the data part of each envelope, one model per event type.

These models are the contract between services and with integrators who subscribe to the
events. Rules that keep the contract safe to evolve:

- adding an optional field is compatible: consumers ignore fields they do not know
  (``extra="ignore"``), so an old consumer reads a new producer's payload;
- renaming, removing or retyping a field is a new schema version (see ``EventSpec.version``);
- payloads never carry credentials: a provider is referenced by id and by the name of the
  Kubernetes Secret that holds its credentials, never by its password.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from shared import populator as contract

Id = Annotated[str, Field(min_length=1, max_length=253)]


class Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# --- shared vocabulary ----------------------------------------------------------------------


class ProviderType(StrEnum):
    OVIRT = "ovirt"
    OPENSTACK = "openstack"
    KUBEVIRT = "kubevirt"

    @property
    def display(self) -> str:
        """The name people write: oVirt, OpenStack, KubeVirt."""
        return _PROVIDER_TITLES[self]

    def phrase(self, noun: str = "provider") -> str:
        """``an oVirt provider``, ``an OpenStack source``, ``a KubeVirt provider``: messages
        read as people write them."""
        title = self.display
        return f"{'an' if title[0].lower() in 'aeio' else 'a'} {title} {noun}"


_PROVIDER_TITLES = {
    ProviderType.OVIRT: "oVirt",
    ProviderType.OPENSTACK: "OpenStack",
    ProviderType.KUBEVIRT: "KubeVirt",
}


class ProviderPhase(StrEnum):
    STAGING = "Staging"
    READY = "Ready"
    CONNECTION_FAILED = "ConnectionFailed"
    VALIDATION_FAILED = "ValidationFailed"
    DELETING = "Deleting"


class ChangeAction(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


class MigrationType(StrEnum):
    COLD = "cold"
    WARM = "warm"


class PowerState(StrEnum):
    ON = "on"
    OFF = "off"
    AUTO = "auto"  # as the source VM was before the migration


class Step(StrEnum):
    """Pipeline steps of one VM, in the order they run (Forklift's names where they exist)."""

    INITIALIZE = "Initialize"
    WARM_PRECOPY = "WarmPrecopy"  # warm: copies while the source runs, until the cutover
    PRE_HOOK = "PreHook"  # opt-in: the user's Job, the source still running
    POWER_OFF_SOURCE = "PowerOffSource"
    CONVERT_OPENSTACK_SNAPSHOT = "ConvertOpenstackSnapshot"
    DISK_ALLOCATION = "DiskAllocation"
    DISK_TRANSFER = "DiskTransfer"
    FINAL_COPY = "FinalCopy"  # warm: what changed since the last precopy, source off
    CONVERT_GUEST = "ConvertGuest"  # opt-in: virt-v2v-in-place on all the VM's volumes
    VIRTUAL_MACHINE_CREATION = "VirtualMachineCreation"
    POST_HOOK = "PostHook"  # opt-in: the user's Job, the target VM created
    CLEANUP = "Cleanup"
    COMPLETED = "Completed"


class StepState(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    CANCELED = "Canceled"


class WaitReason(StrEnum):
    """Why a VM waits to be admitted, its source untouched (``detail.waiting.reason`` of its
    first step's Pending event)."""

    CUTOVER = "Cutover"  # the plan's cutover time has not come
    PLAN_VMS = "PlanVmLimit"  # maxVmsInFlight of the plan
    PLAN_DISKS = "PlanDiskLimit"  # maxDisksInFlight of the plan
    SOURCE_DISKS = "SourceDiskLimit"  # maxDisksInFlightPerSource, all plans together
    FAIRNESS = "Fairness"  # another plan on the same source holds less; it goes first
    IN_LINE = "InLine"  # an earlier VM of the plan waits; it goes first


class Outcome(StrEnum):
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELED = "Canceled"


class Condition(Payload):
    """A Kubernetes-style condition, so status reads the same everywhere in Hoist."""

    type: str
    status: bool
    reason: str = ""
    message: str = ""
    last_transition: datetime | None = None


class ErrorInfo(Payload):
    """Why something failed, and whether trying again can help."""

    reason: str = Field(description="Machine-readable, CamelCase (e.g. DiskLocked).")
    message: str
    permanent: bool = Field(
        description="True: retrying the same thing fails the same way; a person must act."
    )


class ResourceRef(Payload):
    namespace: str
    name: str
    uid: str | None = None


# --- inventory -----------------------------------------------------------------------------


class ProviderStatusChanged(Payload):
    provider_id: Id
    provider_type: ProviderType
    name: str
    phase: ProviderPhase
    conditions: list[Condition] = Field(default_factory=list)
    last_refresh: datetime | None = None
    revision: int = Field(ge=0, description="Increases with every change of the provider.")


class InventoryObjectChanged(Payload):
    """One object of a provider's inventory was created, changed or removed.

    Carries the revision, not the object: a consumer that needs the object reads it from the
    inventory API at that revision or later, so a burst of changes stays a burst of ids.
    """

    provider_id: Id
    kind: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$",
        description="vm, disk, network, storage_domain, image, volume, namespace, ...",
    )
    object_id: Id
    name: str = ""
    action: ChangeAction
    revision: int = Field(ge=0)


# --- planner -------------------------------------------------------------------------------


class ProviderRef(Payload):
    """How a consumer reaches a provider: where, and which Secret holds the credentials."""

    id: Id
    type: ProviderType
    url: str
    secret: ResourceRef
    tls_fingerprint_sha256: str | None = None


class PlannedDisk(Payload):
    disk_id: Id
    name: str = ""
    size_bytes: int = Field(ge=0)
    format: str = Field("raw", description="raw or qcow2 as the source stores it")
    source_storage: str = Field("", description="Storage domain, volume type or 'glance'.")
    boot: bool = False
    bus: str = "virtio"
    pvc_name: str
    storage_class: str
    volume_mode: str = Field(pattern=r"^(Filesystem|Block)$")
    access_mode: str = Field(
        pattern=r"^(ReadWriteOnce|ReadWriteMany|ReadOnlyMany|ReadWriteOncePod)$"
    )


class PlannedNic(Payload):
    nic_id: Id
    name: str = ""
    mac: str | None = None
    model: str = "virtio"
    source_network: str
    target: str = Field(description="'pod', 'ignored', or namespace/name of a Multus network")


class HookSpec(Payload):
    """A hook as its definition stood when the plan started (``shared.hooks`` says how it
    runs): editing or deleting the hook later cannot change a migration that runs."""

    name: str = Field(min_length=1, max_length=63)
    image: str = Field(min_length=1, max_length=512)
    playbook: str | None = Field(
        None, description="An Ansible playbook (YAML text); the image is then its runner."
    )
    service_account: str | None = Field(
        None, description="The Job's service account (unset: the namespace's default)."
    )
    deadline_seconds: int = Field(
        600, ge=1, description="The Job's activeDeadlineSeconds: all its tries together."
    )
    retries: int = Field(0, ge=0, description="The Job's backoffLimit: failed pods tried again.")


class PlannedHook(Payload):
    """A hook one VM runs at one step (``PreHook`` or ``PostHook``)."""

    step: Step
    hook: HookSpec


class PlannedVm(Payload):
    vm_id: Id
    name: str
    target_name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    disks: list[PlannedDisk]
    nics: list[PlannedNic] = Field(default_factory=list)
    source_power_state: str = ""
    target_power_state: PowerState | None = Field(
        None, description="Overrides the plan's ``target_power_state`` for this VM."
    )
    detail: dict[str, object] = Field(
        default_factory=dict,
        description="CPU, memory, firmware, OS and the rest of the source configuration.",
    )
    convert_guest: bool = Field(
        False,
        description="Run ConvertGuest (virt-v2v-in-place on all the VM's volumes) before its "
        "VirtualMachine is created: the VM's own choice, else the plan's, resolved at start.",
    )
    hooks: list[PlannedHook] = Field(
        default_factory=list,
        description="At most one per step: the VM's own, else the plan's, resolved at start.",
    )
    source: dict[str, object] | None = Field(
        None,
        description="The source VM as the inventory knew it at start; only for a VM with "
        "hooks (their ``vm.yml``), so a plan without hooks stays as small as it was.",
    )


class PlanStarted(Payload):
    """A plan frozen at start: everything the orchestrator needs, resolved and named.

    The orchestrator never asks the planner for more, so a plan edited after start cannot
    change a migration that is already running.
    """

    plan_id: Id
    migration_id: Id
    plan_name: str
    source: ProviderRef
    target: ProviderRef
    target_namespace: str
    migration_type: MigrationType = MigrationType.COLD
    target_power_state: PowerState = PowerState.AUTO
    transfer_network: str | None = None
    max_disks_in_flight: int = Field(10, ge=1)
    max_disks_in_flight_per_source: int = Field(20, ge=1)
    max_vms_in_flight: int = Field(
        20,
        ge=1,
        description="VMs of this migration admitted at once: a VM is admitted before its "
        "source is touched and holds its place until its target VM exists.",
    )
    cutover: datetime | None = Field(
        None,
        description="No source VM is powered off before this time (unset: at once). Later "
        "changes come as ``PlanCutoverChanged``.",
    )
    precopy_interval_minutes: int = Field(
        60,
        ge=1,
        description="Warm: minutes between the end of one precopy and the start of the "
        "next (Forklift's PRECOPY_INTERVAL).",
    )
    vms: list[PlannedVm]
    part: int = Field(
        1,
        ge=1,
        description="A large plan is published in parts (NATS caps a message's size, 1 MiB "
        "by default): each part repeats everything but ``vms`` and carries some of them.",
    )
    parts: int = Field(1, ge=1, description="How many parts this migration's plan has.")
    vms_total: int | None = Field(
        None, ge=0, description="VMs in all parts together (unset: ``len(vms)``)."
    )


class PlanCancelRequested(Payload):
    plan_id: Id
    migration_id: Id
    vm_ids: list[str] = Field(default_factory=list, description="Empty: the whole plan.")
    reason: str = ""


class PlanCutoverChanged(Payload):
    """The cutover time of a running migration changed (or was cleared: ``None``, at once).

    ``revision`` grows with every change of the plan's cutover; a consumer keeps the highest
    it saw, so a redelivered or reordered older change never undoes a newer one. The cutover
    frozen in ``PlanStarted`` counts as revision 0.
    """

    plan_id: Id
    migration_id: Id
    cutover: datetime | None = None
    revision: int = Field(ge=1)


class PlanStatusChanged(Payload):
    plan_id: Id
    migration_id: Id | None = None
    phase: str
    vms_total: int = Field(0, ge=0)
    vms_succeeded: int = Field(0, ge=0)
    vms_failed: int = Field(0, ge=0)
    vms_canceled: int = Field(0, ge=0)
    conditions: list[Condition] = Field(default_factory=list)


class HookChanged(Payload):
    """A hook was created, changed or deleted (its definition is read from the API)."""

    hook_id: Id
    name: str
    action: ChangeAction
    revision: int = Field(ge=0)


# --- orchestrator --------------------------------------------------------------------------


class StepProgress(Payload):
    """How far a step (or one task of it) got: bytes for DiskTransfer, items elsewhere."""

    completed: int = Field(ge=0)
    total: int = Field(ge=0)


class VmStepChanged(Payload):
    """A step of one VM's pipeline, or one task of a step, changed state.

    ``task`` names a task within the step (DiskTransfer: the disk id; DiskAllocation: the
    disk id); ``None`` means the step itself. Events may arrive twice or out of order, so
    consumers order them by ``(attempt, state)``: a higher attempt supersedes, and within an
    attempt Pending < Running < a final state.
    """

    plan_id: Id
    migration_id: Id
    vm_id: Id
    step: Step
    state: StepState
    task: str | None = Field(
        None,
        min_length=1,
        max_length=253,
        description="A task of the step (DiskTransfer, DiskAllocation: the disk id); unset: "
        "the step itself.",
    )
    attempt: int = Field(1, ge=1)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    progress: StepProgress | None = None
    error: ErrorInfo | None = None
    detail: dict[str, object] = Field(default_factory=dict)


class VmFinished(Payload):
    plan_id: Id
    migration_id: Id
    vm_id: Id
    outcome: Outcome
    target_vm: ResourceRef | None = None
    error: ErrorInfo | None = None


class PopulatorPodStarted(Payload):
    """A populator pod exists: the progress service starts scraping its metrics."""

    plan_id: Id
    migration_id: Id
    vm_id: Id
    disk_id: Id
    cluster_id: Id = Field(description="Target provider id (the cluster the pod runs in).")
    pod: ResourceRef
    pod_ip: str | None = None
    metrics_port: int = Field(contract.METRICS_PORT, ge=1, le=65535)
    metrics_scheme: str = Field(contract.METRICS_SCHEME, pattern=r"^https?$")
    owner_uid: str = Field(description="UID of the user PVC; the pod's metrics label it so.")
    pvc: ResourceRef
    total_bytes: int = Field(ge=0)
    populator_kind: str


class PopulatorPodFinished(Payload):
    plan_id: Id
    migration_id: Id
    vm_id: Id
    disk_id: Id
    cluster_id: Id
    pod: ResourceRef
    owner_uid: str
    outcome: Outcome
    bytes_transferred: int | None = Field(None, ge=0)
    error: ErrorInfo | None = None


class PopulationEnded(Payload):
    """A disk's population ended for good: its CR is Succeeded (the user claim bound to the
    populated volume) or Failed. The orchestrator's DiskTransfer step looks at once rather
    than at its next poll; a lost notice costs that poll, nothing else."""

    plan_id: Id
    migration_id: Id
    vm_id: Id
    disk_id: Id
    cluster_id: Id
    outcome: Outcome


# --- progress ------------------------------------------------------------------------------


class DiskProgress(Payload):
    plan_id: Id
    migration_id: Id
    vm_id: Id
    disk_id: Id
    bytes_done: int = Field(ge=0)
    bytes_total: int = Field(ge=0)
    percent: float = Field(ge=0, le=100)
    rate_bytes_per_second: float | None = Field(None, ge=0)
    eta_seconds: float | None = Field(None, ge=0)
    observed_at: datetime


class VmProgress(Payload):
    plan_id: Id
    migration_id: Id
    vm_id: Id
    disks_total: int = Field(ge=0)
    disks_done: int = Field(ge=0)
    bytes_done: int = Field(ge=0)
    bytes_total: int = Field(ge=0)
    percent: float = Field(ge=0, le=100)
    rate_bytes_per_second: float | None = Field(None, ge=0)
    eta_seconds: float | None = Field(None, ge=0)
    observed_at: datetime
