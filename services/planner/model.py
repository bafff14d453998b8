"""What users write: network maps, storage maps and plans, as the API accepts them.

These models check shape only (types, names, enums, templates, one destination per
entry); whether the things they name exist is the inventory's to say, in
``validating``. Unknown fields are refused, so a typo (``targetNamspace``) is a 422, not a
silently ignored setting.
"""

from __future__ import annotations

import fnmatch
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from services.planner import naming
from shared.payloads import MigrationType, PowerState

NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
#: A warm plan's precopy interval: Forklift's default, and at most a day (a longer gap
#: lets so much change that the next precopy is little better than a cold copy).
DEFAULT_PRECOPY_MINUTES = 60
MAX_PRECOPY_MINUTES = 1440
Ref = Annotated[str, Field(min_length=1, max_length=253, description="An id or a name.")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# RFC 3339 (``T`` or a space between date and time); the offset is left optional here so
# that a time without one is refused by ``AwareDatetime`` with its own precise error.
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2})?$"
)
_TIME_HINT = "an RFC 3339 time with a timezone, such as 2026-05-01T22:00:00Z"


def _rfc3339(value: object) -> object:
    """Only RFC 3339 text (or a datetime, from Python): pydantic alone would also take a
    number or a bare date, which are too easy to get wrong for a time that powers VMs off."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.match(value.strip()):
        raise ValueError(f"expected {_TIME_HINT}")
    return value.strip()


def _now_or_time(value: object) -> object:
    """``"now"`` is the server's current time: the client's clock may be wrong."""
    if value == "now":
        return datetime.now(UTC)
    try:
        return _rfc3339(value)
    except ValueError:
        raise ValueError(f'expected "now", null or {_TIME_HINT}') from None


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the year 1 in UTC
        raise ValueError(f"the time is out of range; expected {_TIME_HINT}") from None


#: A cutover time as the API takes it: RFC 3339 with a timezone (a naive time is a 422),
#: kept in UTC.
CutoverTime = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_in_utc)]
#: The same, or ``"now"``.
CutoverTimeOrNow = Annotated[AwareDatetime, BeforeValidator(_now_or_time), AfterValidator(_in_utc)]


class SourceRef(Strict):
    """A source network or storage by id or by name (one of them)."""

    id: str | None = Field(None, min_length=1, max_length=253)
    name: str | None = Field(None, min_length=1, max_length=253)

    @model_validator(mode="after")
    def _one(self) -> SourceRef:
        if (self.id is None) == (self.name is None):
            raise ValueError("give exactly one of id or name")
        return self


class NetworkDestinationType(StrEnum):
    POD = "pod"
    MULTUS = "multus"
    IGNORED = "ignored"


class NetworkDestination(Strict):
    type: NetworkDestinationType
    namespace: str | None = Field(None, pattern=NAME)
    name: str | None = Field(None, pattern=NAME)

    @model_validator(mode="after")
    def _multus_needs_name(self) -> NetworkDestination:
        if self.type is NetworkDestinationType.MULTUS:
            if not self.name:
                raise ValueError("a multus destination names its NetworkAttachmentDefinition")
        elif self.name or self.namespace:
            raise ValueError(f"a {self.type.value} destination takes no namespace or name")
        return self


class NetworkMapEntry(Strict):
    source: SourceRef
    destination: NetworkDestination


class StorageSource(Strict):
    """A storage domain (oVirt) or volume type (OpenStack) by id or name, or
    ``type: glance`` for the root disks of image-backed OpenStack servers."""

    id: str | None = Field(None, min_length=1, max_length=253)
    name: str | None = Field(None, min_length=1, max_length=253)
    type: Literal["glance"] | None = None

    @model_validator(mode="after")
    def _one(self) -> StorageSource:
        if sum(x is not None for x in (self.id, self.name, self.type)) != 1:
            raise ValueError("give exactly one of id, name or type: glance")
        return self


class StorageDestination(Strict):
    storage_class: str = Field(
        alias="storageClass",
        max_length=253,
        description='A StorageClass name; "" is static provisioning (pre-made volumes '
        "without a class), as is a class with the kubernetes.io/no-provisioner provisioner: "
        "each disk then needs an Available PersistentVolume that fits.",
    )
    volume_mode: Literal["Filesystem", "Block"] | None = Field(
        None, alias="volumeMode", description="Unset: from the class's StorageProfile."
    )
    access_mode: (
        Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod"] | None
    ) = Field(None, alias="accessMode", description="Unset: from the class's StorageProfile.")


class StorageMapEntry(Strict):
    source: StorageSource
    destination: StorageDestination


def _no_duplicate_sources(entries: list[Any]) -> list[Any]:
    seen: dict[tuple[str, str], int] = {}
    for i, e in enumerate(entries):
        src = e.source
        key = next((k, str(v)) for k in ("id", "name", "type") if (v := getattr(src, k, None)))
        if key in seen:
            raise ValueError(
                f"entries {seen[key]} and {i} both map source {key[0]}={key[1]!r}; one "
                "source has one destination"
            )
        seen[key] = i
    return entries


class MapCreate(Strict):
    name: str = Field(pattern=NAME)
    description: str = Field("", max_length=2000)
    source_provider: Ref = Field(alias="sourceProvider")
    target_provider: Ref = Field(alias="targetProvider")


class NetworkMapCreate(MapCreate):
    entries: list[NetworkMapEntry] = Field(max_length=10_000)

    _dupes = field_validator("entries")(_no_duplicate_sources)


class StorageMapCreate(MapCreate):
    entries: list[StorageMapEntry] = Field(max_length=10_000)

    _dupes = field_validator("entries")(_no_duplicate_sources)


class MapUpdate(Strict):
    """Name and providers are fixed (plans refer to the map); the rest may change."""

    description: str | None = Field(None, max_length=2000)


class NetworkMapUpdate(MapUpdate):
    entries: list[NetworkMapEntry] | None = Field(None, max_length=10_000)

    _dupes = field_validator("entries")(lambda v: v if v is None else _no_duplicate_sources(v))


class StorageMapUpdate(MapUpdate):
    entries: list[StorageMapEntry] | None = Field(None, max_length=10_000)

    _dupes = field_validator("entries")(lambda v: v if v is None else _no_duplicate_sources(v))


# --- plans ----------------------------------------------------------------------------------


HookStep = Literal["PreHook", "PostHook"]


class HookRef(Strict):
    """A plan's (or a VM's) hook at one step (``services/planner/hooks.py``)."""

    step: HookStep
    hook: str | None = Field(
        pattern=NAME,
        description="A hook's name; null (in a VM's entry only): no hook at this step for "
        "this VM, whatever the plan says.",
    )


def _hook_steps(refs: list[HookRef] | None) -> list[HookRef] | None:
    if refs is not None and len({r.step for r in refs}) != len(refs):
        raise ValueError("at most one hook per step")
    return refs


HookRefs = Annotated[list[HookRef], Field(max_length=2), AfterValidator(_hook_steps)]


class VmRef(Strict):
    id: str | None = Field(None, min_length=1, max_length=253)
    name: str | None = Field(None, min_length=1, max_length=253)
    target_name: str | None = Field(
        None, alias="targetName", pattern=NAME, description="Overrides the VM name template."
    )
    target_power_state: PowerState | None = Field(
        None,
        alias="targetPowerState",
        description="Overrides the plan's targetPowerState for this VM.",
    )
    convert_guest: bool | None = Field(
        None,
        alias="convertGuest",
        description="Overrides the plan's convertGuest for this VM.",
    )
    hooks: HookRefs | None = Field(
        None, description="Replace the plan's hooks at their steps for this VM."
    )

    @model_validator(mode="after")
    def _one(self) -> VmRef:
        if (self.id is None) == (self.name is None):
            raise ValueError("give exactly one of id or name")
        return self


class VmSelector(Strict):
    """VMs chosen by filter, resolved once when the plan is written (the plan then lists
    them, so a VM appearing later does not join a plan silently)."""

    search: str | None = Field(None, max_length=256, description="Substring of the name.")
    names: list[str] | None = Field(
        None, max_length=1000, description="Shell patterns (fnmatch) the name must match."
    )
    status: str | None = Field(None, max_length=64)
    parent: str | None = Field(
        None, max_length=253, description="oVirt cluster id, OpenStack project id."
    )
    exclude_concerns: Literal["Critical", "Warning"] | None = Field(
        None,
        alias="excludeConcerns",
        description="Leave out VMs with a concern of this category or worse.",
    )

    def matches_name(self, name: str) -> bool:
        return not self.names or any(fnmatch.fnmatchcase(name, p) for p in self.names)


class Naming(Strict):
    vm: str = Field(naming.DEFAULT_VM, max_length=253, description="Target VM name template.")
    pvc: str = Field(naming.DEFAULT_PVC, max_length=253, description="PVC name template.")

    @field_validator("vm")
    @classmethod
    def _vm(cls, value: str) -> str:
        return naming.check_template(value, naming.VM_FIELDS)

    @field_validator("pvc")
    @classmethod
    def _pvc(cls, value: str) -> str:
        return naming.check_template(value, naming.PVC_FIELDS)


class Limits(Strict):
    max_disks_in_flight: int | None = Field(
        None, alias="maxDisksInFlight", ge=1, le=10_000, description="Per plan."
    )
    max_disks_in_flight_per_source: int | None = Field(
        None, alias="maxDisksInFlightPerSource", ge=1, le=10_000, description="Per provider."
    )
    max_vms_in_flight: int | None = Field(
        None,
        alias="maxVmsInFlight",
        ge=1,
        le=10_000,
        description="VMs of the plan in flight at once (admitted before their source is "
        "touched, until their target VM exists).",
    )


class PlanFields(Strict):
    description: str = Field("", max_length=2000)
    target_namespace: str = Field(alias="targetNamespace", pattern=NAME)
    network_map: Ref = Field(alias="networkMap")
    storage_map: Ref = Field(alias="storageMap")
    vms: list[VmRef] | None = Field(None, max_length=20_000)
    vm_selector: VmSelector | None = Field(None, alias="vmSelector")
    migration_type: MigrationType = Field(MigrationType.COLD, alias="migrationType")
    target_power_state: PowerState = Field(PowerState.AUTO, alias="targetPowerState")
    transfer_network: str | None = Field(
        None,
        alias="transferNetwork",
        pattern=r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="A NetworkAttachmentDefinition (namespace/name, or name in the target "
        "namespace) the populator pods copy over.",
    )
    naming: Naming = Field(default_factory=Naming)
    limits: Limits = Field(default_factory=Limits)
    cutover: CutoverTime | None = Field(
        None,
        description="No source VM is powered off before this time; unset: at once. While "
        "the plan runs, change it with PUT .../cutover.",
    )
    precopy_interval_minutes: int = Field(
        DEFAULT_PRECOPY_MINUTES,
        alias="precopyIntervalMinutes",
        ge=1,
        le=MAX_PRECOPY_MINUTES,
        description="Warm: minutes from the end of one precopy to the start of the next, "
        "until the cutover. A cold plan keeps it but does not use it.",
    )
    convert_guest: bool = Field(
        False,
        alias="convertGuest",
        description="Run ConvertGuest (virt-v2v-in-place on all of a VM's volumes, in one "
        "pod) after the disks are copied and before the VirtualMachine is created: for "
        "guests that lack virtio drivers or need their initramfs made again. A VM's own "
        "convertGuest overrides it.",
    )
    hooks: HookRefs = Field(
        default_factory=list,
        description="Hooks every VM runs: PreHook before its source is powered off, "
        "PostHook after its VirtualMachine is created (a VM's own hooks replace them).",
    )

    @model_validator(mode="after")
    def _one_way_to_choose(self) -> PlanFields:
        if self.vms is not None and self.vm_selector is not None:
            raise ValueError("choose VMs by `vms` or by `vmSelector`, not both")
        if self.vms is None and self.vm_selector is None:
            raise ValueError("name the VMs to migrate: `vms` (ids or names) or `vmSelector`")
        return self


class PlanCreate(PlanFields):
    name: str = Field(pattern=NAME)
    source_provider: Ref = Field(alias="sourceProvider")
    target_provider: Ref = Field(alias="targetProvider")


class PlanUpdate(Strict):
    """Everything but the name and providers; a field left out keeps its value."""

    description: str | None = Field(None, max_length=2000)
    target_namespace: str | None = Field(None, alias="targetNamespace", pattern=NAME)
    network_map: Ref | None = Field(None, alias="networkMap")
    storage_map: Ref | None = Field(None, alias="storageMap")
    vms: list[VmRef] | None = Field(None, max_length=20_000)
    vm_selector: VmSelector | None = Field(None, alias="vmSelector")
    migration_type: MigrationType | None = Field(None, alias="migrationType")
    target_power_state: PowerState | None = Field(None, alias="targetPowerState")
    transfer_network: str | None = Field(
        None,
        alias="transferNetwork",
        pattern=r"^(([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)?$",
        description='"" removes it.',
    )
    naming: Naming | None = None
    limits: Limits | None = None
    cutover: CutoverTime | None = Field(
        None,
        description="null clears it (at once). Refused while the plan runs: use PUT "
        ".../cutover, which tells the running migration.",
    )
    convert_guest: bool | None = Field(None, alias="convertGuest")
    hooks: HookRefs | None = Field(None, description="Replaces the plan's hooks ([]: none).")
    precopy_interval_minutes: int | None = Field(
        None,
        alias="precopyIntervalMinutes",
        ge=1,
        le=MAX_PRECOPY_MINUTES,
        description=f"null: back to the default ({DEFAULT_PRECOPY_MINUTES}).",
    )

    @model_validator(mode="after")
    def _one_way_to_choose(self) -> PlanUpdate:
        if self.vms is not None and self.vm_selector is not None:
            raise ValueError("choose VMs by `vms` or by `vmSelector`, not both")
        return self


class CancelRequest(Strict):
    vms: list[str] | None = Field(
        None, max_length=20_000, description="VM ids; omitted: the whole plan."
    )
    reason: str = Field("", max_length=1000)


class CutoverRequest(Strict):
    """The body of ``PUT /plans/{plan}/cutover``: ``at`` is required, so ``{}`` is a 422
    rather than a silent "at once"."""

    at: CutoverTimeOrNow | None = Field(
        description='RFC 3339 with a timezone, "now" (the server\'s time), or null: at once.'
    )
