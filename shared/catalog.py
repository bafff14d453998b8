"""The event catalog: every NATS subject Hoist uses, its payload, and how it is delivered.

This module is the single place where a subject is spelled. Producers and consumers name an
``EventSpec`` from here; the bus renders the concrete subject from the payload, prefixed with
the installation's root token (``HOIST_NATS_PREFIX``, default ``hoist``).

Delivery classes:

- ``Delivery.STREAM``: JetStream. Stored, de-duplicated by event id, redelivered until a
  consumer acknowledges it, dead-lettered after too many failed attempts. For everything
  whose loss would stall or falsify a migration.
- ``Delivery.CORE``: plain NATS pub/sub, at most once. For high-rate samples where the next
  message supersedes the last one (progress); the durable copy lives in PostgreSQL.

Subjects carry the ids integrators filter on as tokens, most general first, so that
``hoist.migration.<plan>.>`` follows one plan and ``hoist.progress.*.vm.<vm>`` one VM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from string import Formatter
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from shared import payloads as p

P = TypeVar("P", bound=BaseModel)


class Delivery(StrEnum):
    STREAM = "jetstream"
    CORE = "core"


@dataclass(frozen=True)
class Stream:
    """A JetStream stream; ``name`` and ``subjects`` are relative to the installation prefix."""

    name: str
    subjects: tuple[str, ...]
    description: str
    max_age: timedelta | None = None  # None: the installation's HOIST_NATS_STREAM_MAX_AGE_DAYS


@dataclass(frozen=True)
class EventSpec(Generic[P]):
    """One kind of event: its subject template, payload model and delivery contract."""

    name: str
    subject: str
    payload: type[P]
    delivery: Delivery
    producer: str
    consumers: tuple[str, ...]
    description: str
    version: int = 1
    stream: Stream | None = None
    tokens: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = tuple(n for _, n, _, _ in Formatter().parse(self.subject) if n)
        object.__setattr__(self, "tokens", names)
        missing = [n for n in names if n not in self.payload.model_fields]
        if missing:
            raise TypeError(f"{self.name}: subject tokens {missing} are not payload fields")
        if (self.delivery is Delivery.STREAM) != (self.stream is not None):
            raise TypeError(f"{self.name}: a JetStream event needs a stream, a core one none")

    @property
    def ce_type(self) -> str:
        """CloudEvents ``type`` attribute: reverse-DNS, versioned."""
        return f"io.hoist.{self.name}.v{self.version}"

    def render(self, data: BaseModel) -> str:
        """The concrete relative subject of one payload."""
        return self.subject.format(**{t: subject_token(getattr(data, t)) for t in self.tokens})

    def filter(self, **known: str) -> str:
        """A subscription filter: given tokens filled in, the others ``*``."""
        unknown = set(known) - set(self.tokens)
        if unknown:
            raise ValueError(f"{self.name} has no subject tokens {sorted(unknown)}")
        return self.subject.format(
            **{t: subject_token(known[t]) if t in known else "*" for t in self.tokens}
        )


_UNSAFE = re.compile(r"[^A-Za-z0-9_\-:=@]")


def subject_token(value: object) -> str:
    """Make any id one safe subject token: ``.``, ``*``, ``>`` and blanks would split it or
    turn it into a wildcard, so they (and anything unusual) are percent-encoded."""
    text = str(value)
    if not text:
        return "_"
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text)


# --- streams -------------------------------------------------------------------------------

INVENTORY = Stream("INVENTORY", ("inventory.>",), "Provider status and inventory changes.")
PLANS = Stream("PLANS", ("plan.>",), "Plan lifecycle: started, cancel requested, status.")
MIGRATIONS = Stream(
    "MIGRATIONS",
    ("migration.>", "populator.>"),
    "Per-VM pipeline steps, outcomes and populator pods.",
)
DEADLETTER = Stream(
    "DEADLETTER",
    ("dlq.>",),
    "Messages a consumer gave up on, with the reason in headers; kept for a person to read.",
    max_age=timedelta(days=30),
)

STREAMS: tuple[Stream, ...] = (INVENTORY, PLANS, MIGRATIONS, DEADLETTER)

DEADLETTER_SUBJECT = "dlq.{consumer}"
"""Where a consumer puts a message it gave up on. Headers: ``Hoist-Dlq-Subject`` (original
subject), ``Hoist-Dlq-Consumer``, ``Hoist-Dlq-Deliveries``, ``Hoist-Dlq-Reason``,
``Hoist-Dlq-Error``; body: the original envelope, unchanged."""


# --- events --------------------------------------------------------------------------------

PROVIDER_STATUS: EventSpec[Any] = EventSpec(
    name="inventory.provider.status",
    subject="inventory.provider.{provider_id}.status",
    payload=p.ProviderStatusChanged,
    delivery=Delivery.STREAM,
    stream=INVENTORY,
    producer="inventory",
    consumers=("planner",),
    description="A provider's phase or conditions changed (connection test, refresh).",
)

INVENTORY_CHANGED: EventSpec[Any] = EventSpec(
    name="inventory.object.changed",
    subject="inventory.provider.{provider_id}.{kind}.changed",
    payload=p.InventoryObjectChanged,
    delivery=Delivery.STREAM,
    stream=INVENTORY,
    producer="inventory",
    consumers=("planner",),
    description="An inventory object (VM, disk, network, ...) was created, changed or removed; "
    "carries its new revision.",
)

PLAN_STARTED: EventSpec[Any] = EventSpec(
    name="plan.started",
    subject="plan.{plan_id}.started",
    payload=p.PlanStarted,
    delivery=Delivery.STREAM,
    stream=PLANS,
    producer="planner",
    consumers=("orchestrator",),
    description="A plan was started (or re-run): the frozen plan with VMs, disks, sizes, "
    "resolved mappings and target names.",
)

PLAN_CANCEL_REQUESTED: EventSpec[Any] = EventSpec(
    name="plan.cancel.requested",
    subject="plan.{plan_id}.cancel",
    payload=p.PlanCancelRequested,
    delivery=Delivery.STREAM,
    stream=PLANS,
    producer="planner",
    consumers=("orchestrator",),
    description="Cancel the whole migration of a plan or chosen VMs of it.",
)

PLAN_CUTOVER_CHANGED: EventSpec[Any] = EventSpec(
    name="plan.cutover.changed",
    subject="plan.{plan_id}.cutover",
    payload=p.PlanCutoverChanged,
    delivery=Delivery.STREAM,
    stream=PLANS,
    producer="planner",
    consumers=("orchestrator",),
    description="A running plan's cutover time changed: no source VM is powered off before it.",
)

HOOK_CHANGED: EventSpec[Any] = EventSpec(
    name="plan.hook.changed",
    subject="plan.hook.{hook_id}.{action}",
    payload=p.HookChanged,
    delivery=Delivery.STREAM,
    stream=PLANS,
    producer="planner",
    consumers=(),
    description="A hook was created, changed or deleted (for integrators and UIs); plans "
    "freeze a hook's definition when they start.",
)

PLAN_STATUS: EventSpec[Any] = EventSpec(
    name="plan.status",
    subject="plan.{plan_id}.status",
    payload=p.PlanStatusChanged,
    delivery=Delivery.STREAM,
    stream=PLANS,
    producer="planner",
    consumers=(),
    description="A plan's phase or VM counts changed (for integrators and UIs).",
)

VM_STEP_CHANGED: EventSpec[Any] = EventSpec(
    name="migration.vm.step",
    subject="migration.{plan_id}.vm.{vm_id}.step",
    payload=p.VmStepChanged,
    delivery=Delivery.STREAM,
    stream=MIGRATIONS,
    producer="orchestrator",
    consumers=("planner",),
    description="A VM's pipeline step changed state (Pending, Running, Completed, Failed, ...).",
)

VM_FINISHED: EventSpec[Any] = EventSpec(
    name="migration.vm.finished",
    subject="migration.{plan_id}.vm.{vm_id}.finished",
    payload=p.VmFinished,
    delivery=Delivery.STREAM,
    stream=MIGRATIONS,
    producer="orchestrator",
    consumers=("planner",),
    description="A VM's migration ended: Succeeded, Failed or Canceled.",
)

POPULATOR_POD_STARTED: EventSpec[Any] = EventSpec(
    name="populator.pod.started",
    subject="populator.{plan_id}.vm.{vm_id}.disk.{disk_id}.started",
    payload=p.PopulatorPodStarted,
    delivery=Delivery.STREAM,
    stream=MIGRATIONS,
    producer="controller",
    consumers=("progress",),
    description="A populator pod for one disk exists; where to scrape its metrics.",
)

POPULATOR_POD_FINISHED: EventSpec[Any] = EventSpec(
    name="populator.pod.finished",
    subject="populator.{plan_id}.vm.{vm_id}.disk.{disk_id}.finished",
    payload=p.PopulatorPodFinished,
    delivery=Delivery.STREAM,
    stream=MIGRATIONS,
    producer="controller",
    consumers=("progress",),
    description="A populator pod ended (succeeded or failed); stop scraping it.",
)

POPULATION_ENDED: EventSpec[Any] = EventSpec(
    name="population.ended",
    subject="population.{plan_id}.vm.{vm_id}.disk.{disk_id}.ended",
    payload=p.PopulationEnded,
    delivery=Delivery.CORE,
    producer="controller",
    consumers=("orchestrator",),
    description="A disk's populator CR reached Succeeded (claim bound) or Failed: the "
    "VM's DiskTransfer step looks at once instead of at its next poll (at most once; the "
    "poll is the safety net).",
)

DISK_PROGRESS: EventSpec[Any] = EventSpec(
    name="progress.disk",
    subject="progress.{plan_id}.vm.{vm_id}.disk.{disk_id}",
    payload=p.DiskProgress,
    delivery=Delivery.CORE,
    producer="progress",
    consumers=("planner",),
    description="Bytes copied, rate and ETA of one disk; sent when it changed, rate-limited.",
)

VM_PROGRESS: EventSpec[Any] = EventSpec(
    name="progress.vm",
    subject="progress.{plan_id}.vm.{vm_id}",
    payload=p.VmProgress,
    delivery=Delivery.CORE,
    producer="progress",
    consumers=("planner",),
    description="Progress of one VM summed over its disks; sent when it changed.",
)

EVENTS: tuple[EventSpec[Any], ...] = (
    PROVIDER_STATUS,
    INVENTORY_CHANGED,
    PLAN_STARTED,
    PLAN_CANCEL_REQUESTED,
    PLAN_CUTOVER_CHANGED,
    HOOK_CHANGED,
    PLAN_STATUS,
    VM_STEP_CHANGED,
    VM_FINISHED,
    POPULATOR_POD_STARTED,
    POPULATOR_POD_FINISHED,
    POPULATION_ENDED,
    DISK_PROGRESS,
    VM_PROGRESS,
)

BY_TYPE: dict[str, EventSpec[Any]] = {e.ce_type: e for e in EVENTS}


def spec_for(ce_type: str) -> EventSpec[Any] | None:
    return BY_TYPE.get(ce_type)
