"""Tables of the orchestrator service, all in its own PostgreSQL schema ``orchestrator``.

No other service reads them; they change only through this service's migrations.

- ``migrations``: one row per started (or re-run) plan: the frozen header of the
  ``plan.started`` event (source, target, namespace, limits; ``header``), which parts of it
  arrived, and whether the whole plan was asked to cancel (a cancel may arrive before the
  start: the row then exists with no header yet; ``cancel_vms`` keeps the VMs a cancel
  named before they arrived).
- ``vms``: one row per VM of a migration, the state machine the runner drives: ``phase``
  (Queued, Running, Failing, Canceling, Succeeded, Failed, Canceled), the current ``step``
  and what the step remembered between polls (``memory``: the source's power state, the
  images of a conversion, when a shutdown was sent...), ``holding`` (disks admitted in flight,
  counted against the plan's and the source's limits), ``holds_vm`` (a slot of the plan's
  VMs in flight, from admission, before the source is touched, until the target VM exists),
  when to look again
  (``next_run_at``) and which replica holds it for how long (``lease_owner``,
  ``lease_until``): a crashed replica's VMs are taken over once the lease ends.
- ``steps``: one row per step of a VM and per task of a step (``task`` = the disk id for
  DiskAllocation and DiskTransfer, ``''`` for the step itself): state, times, progress,
  error. The API reads them; every change is also published as ``migration.vm.step``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    Row,
    String,
    Table,
    Text,
    and_,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase

from shared.db.messaging import service_metadata
from shared.payloads import Step
from shared.pipeline import VM_ACTIVE, VM_WAITING, VmPhase

metadata = service_metadata("orchestrator")


class Base(DeclarativeBase):
    metadata = metadata


inbox = metadata.tables["orchestrator.inbox"]
outbox = metadata.tables["orchestrator.outbox"]

S = "orchestrator"

migrations = Table(
    "migrations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("plan_id", String(36), nullable=False, server_default=""),
    Column("plan_name", String(253), nullable=False, server_default=""),
    # The plan.started payload without its VMs; NULL until a part arrives.
    Column("header", JSONB, nullable=True),
    Column("source_provider", String(36), nullable=False, server_default=""),
    Column("parts", Integer, nullable=False, server_default="0"),
    Column("parts_seen", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("vms_total", Integer, nullable=False, server_default="0"),
    Column("cancel_all", Boolean, nullable=False, server_default=text("false")),
    Column("cancel_vms", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("cancel_reason", Text, nullable=False, server_default=""),
    # No source VM is powered off before it; the revision of the last change kept wins.
    Column("cutover", DateTime(timezone=True), nullable=True),
    Column("cutover_revision", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    schema=S,
)

vms = Table(
    "vms",
    metadata,
    Column("migration_id", String(36), primary_key=True),
    Column("vm_id", String(255), primary_key=True),
    Column("plan_id", String(36), nullable=False),
    Column("source_provider", String(36), nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("spec", JSONB, nullable=False),  # the PlannedVm
    Column("phase", String(16), nullable=False, server_default=VmPhase.QUEUED.value),
    Column("step", String(32), nullable=False),
    Column("attempt", Integer, nullable=False, server_default="1"),
    Column("memory", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("holding", Integer, nullable=False, server_default="0"),
    # Admitted VMs hold a VM slot from admission until their target VM exists.
    Column("holds_vm", Boolean, nullable=False, server_default=text("false")),
    Column("admitted_at", DateTime(timezone=True), nullable=True),
    Column("released_at", DateTime(timezone=True), nullable=True),
    Column("error", JSONB, nullable=True),
    Column("cancel_requested", Boolean, nullable=False, server_default=text("false")),
    Column("revision", BigInteger, nullable=False, server_default="0"),
    Column("next_run_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ForeignKeyConstraint(["migration_id"], [f"{S}.migrations.id"], ondelete="CASCADE"),
    schema=S,
)
# The runner's question, many times a second: which unfinished VMs are due?
Index(
    "vms_due",
    vms.c.next_run_at,
    postgresql_where=vms.c.phase.in_(VM_ACTIVE),
)
# Admission sums what a source's (and a plan's) VMs hold.
Index("vms_source_holding", vms.c.source_provider, postgresql_where=vms.c.holding > 0)
Index("vms_source_holds_vm", vms.c.source_provider, postgresql_where=vms.c.holds_vm)
# The line of VMs waiting for admission, in the plan's order.
Index(
    "vms_waiting",
    vms.c.source_provider,
    vms.c.position,
    postgresql_where=and_(vms.c.admitted_at.is_(None), vms.c.phase.in_(VM_WAITING)),
)

steps = Table(
    "steps",
    metadata,
    Column("migration_id", String(36), primary_key=True),
    Column("vm_id", String(255), primary_key=True),
    Column("step", String(32), primary_key=True),
    Column("task", String(255), primary_key=True, server_default=""),
    Column("state", String(16), nullable=False),
    Column("attempt", Integer, nullable=False, server_default="1"),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Column("progress_completed", BigInteger, nullable=True),
    Column("progress_total", BigInteger, nullable=True),
    Column("error", JSONB, nullable=True),
    Column("detail", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    ForeignKeyConstraint(
        ["migration_id", "vm_id"], [f"{S}.vms.migration_id", f"{S}.vms.vm_id"], ondelete="CASCADE"
    ),
    schema=S,
)


# --- typed rows: what the runner, recording and the API read ----------------------------------


@dataclass(frozen=True, slots=True)
class VmRow:
    """One ``vms`` row, with its migration's ``cutover`` where the runner's claim joins it.

    Why typed rather than SQLAlchemy's ``Row``: the runner hands a row from its claim to
    admission, the step call and recording; spelled as attributes of ``Any``, a column
    renamed in a migration would only fail at run time, mid-pipeline. ``phase`` and
    ``step`` are the enums, so comparisons cannot be misspelt either."""

    migration_id: str
    vm_id: str
    plan_id: str
    source_provider: str
    position: int
    spec: dict[str, Any]
    phase: VmPhase
    step: Step
    attempt: int
    memory: dict[str, Any]
    holding: int
    holds_vm: bool
    admitted_at: datetime | None
    released_at: datetime | None
    error: dict[str, Any] | None
    cancel_requested: bool
    revision: int
    next_run_at: datetime
    lease_owner: str | None
    lease_until: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    cutover: datetime | None = None
    """The migration's (not a ``vms`` column): None when the query did not join it."""

    @classmethod
    def of(cls, row: Row[Any]) -> VmRow:
        """The row as read (``select(vms)``, or ``RETURNING v.*, m.cutover``); ``ValueError``
        for a phase or step this code does not know."""
        found = row._mapping
        values = {f.name: found[f.name] for f in fields(cls) if f.name in found}
        values["phase"] = VmPhase(values["phase"])
        values["step"] = Step(values["step"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class StepRow:
    """One ``steps`` row: a step of a VM (``task`` empty) or a task of it (a disk)."""

    migration_id: str
    vm_id: str
    step: str
    task: str
    state: str
    attempt: int
    started_at: datetime | None
    completed_at: datetime | None
    progress_completed: int | None
    progress_total: int | None
    error: dict[str, Any] | None
    detail: dict[str, Any]

    @classmethod
    def of(cls, row: Row[Any]) -> StepRow:
        """``step`` and ``state`` stay strings: the rows are only compared with what a step
        call reports, and the API shows them as stored."""
        found = row._mapping
        return cls(**{f.name: found[f.name] for f in fields(cls)})
