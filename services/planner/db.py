"""Tables of the planner service, all in its own PostgreSQL schema ``planner``.

No other service reads them; they change only through this service's migrations.

What users define:

- ``hooks``: the user's images (and playbooks) plans run as Jobs around a VM's migration.
- ``network_maps`` / ``storage_maps``: reusable mappings from a source provider's networks
  and storages to the target cluster's, ``entries`` as the API took them (validated).
- ``plans``: what to migrate, where, with which maps, names, limits and cutover time; its
  last validation (``problems``), ``phase`` (NotReady, Ready, Running, Succeeded, Failed,
  Canceled) and the migration it runs now or ran last (``migration_id``).

What the planner projects from the orchestrator's and the progress service's events:

- ``migrations``: one row per start or re-run of a plan, with the frozen plan it published
  (``frozen``: the ``PlanStarted`` payload but its VMs' ``detail`` and ``source``, as
  ``launching.frozen_record`` keeps it) and its counts.
- ``vms``: one row per VM of a migration: phase, current step, error, target VM.
- ``steps``: one row per pipeline step of a VM, ``tasks``: one row per task of a step (a disk
  of DiskTransfer or DiskAllocation), each with state, attempt, times, progress and error.

``revision`` (from ``revision_seq``, one sequence for every table) changes whenever a row
changes; ETags are revisions, and the SSE stream resumes from the last revision a client
saw. Steps and tasks bump their VM's revision, so a VM row's revision covers its pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypedDict, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    Sequence,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase

from shared.db.messaging import service_metadata

metadata = service_metadata("planner")


class Base(DeclarativeBase):
    metadata = metadata


inbox = metadata.tables["planner.inbox"]
outbox = metadata.tables["planner.outbox"]

revision_seq = Sequence("revision_seq", metadata=metadata)

_EMPTY_LIST = text("'[]'::jsonb")
_EMPTY_OBJ = text("'{}'::jsonb")


def revised(table: Table, row_id: str, values: Mapping[str, Any]) -> Any:
    """``UPDATE table SET values, a new revision, updated_at = now WHERE id = row_id
    RETURNING *``: how a map or a hook is changed (its ETag moves with it)."""
    return (
        update(table)
        .where(table.c.id == row_id)
        .values(**values, revision=revision_seq.next_value(), updated_at=func.now())
        .returning(table)
    )


def _map_table(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("id", String(36), primary_key=True),
        Column("name", String(63), nullable=False, unique=True),
        Column("description", Text, nullable=False, server_default=""),
        Column("source_provider", String(36), nullable=False, index=True),
        Column("target_provider", String(36), nullable=False, index=True),
        Column("entries", JSONB, nullable=False, server_default=_EMPTY_LIST),
        Column("problems", JSONB, nullable=False, server_default=_EMPTY_LIST),
        Column("revision", BigInteger, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


network_maps = _map_table("network_maps")
storage_maps = _map_table("storage_maps")

hooks = Table(
    "hooks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("description", Text, nullable=False, server_default=""),
    Column("image", String(512), nullable=False),
    Column("playbook", Text),
    Column("service_account", String(253)),
    Column("deadline_seconds", Integer, nullable=False),
    Column("retries", Integer, nullable=False, server_default="0"),
    Column("revision", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

plans = Table(
    "plans",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("description", Text, nullable=False, server_default=""),
    Column("source_provider", String(36), nullable=False, index=True),
    Column("target_provider", String(36), nullable=False, index=True),
    Column("target_namespace", String(63), nullable=False),
    Column(
        "network_map",
        String(36),
        ForeignKey("planner.network_maps.id", ondelete="RESTRICT"),
        nullable=False,
        index=True,
    ),
    Column(
        "storage_map",
        String(36),
        ForeignKey("planner.storage_maps.id", ondelete="RESTRICT"),
        nullable=False,
        index=True,
    ),
    Column("migration_type", String(8), nullable=False, server_default="cold"),
    Column("target_power_state", String(8), nullable=False, server_default="auto"),
    Column("transfer_network", String(253)),
    Column("naming", JSONB, nullable=False, server_default=_EMPTY_OBJ),
    Column("limits", JSONB, nullable=False, server_default=_EMPTY_OBJ),
    # No source VM is powered off before this time (NULL: at once). ``cutover_revision``
    # grows with every change of it, so the orchestrator keeps the newest of the changes it
    # is told while the plan runs (the cutover frozen at start counts as 0).
    Column("cutover", DateTime(timezone=True)),
    Column("cutover_revision", Integer, nullable=False, server_default="0"),
    # Warm: minutes between precopies (frozen at start; a cold plan keeps it unused).
    Column("precopy_interval_minutes", Integer, nullable=False, server_default="60"),
    # Opt-in guest conversion (ConvertGuest) for every VM; a VM's convertGuest overrides it.
    Column("convert_guest", Boolean, nullable=False, server_default="false"),
    # Hooks every VM runs: [{"step": "PreHook"|"PostHook", "hook": name}] (a VM's own
    # ``hooks`` in ``vms`` replace them at their step).
    Column("hooks", JSONB, nullable=False, server_default=_EMPTY_LIST),
    # How the VMs were chosen (a filter resolved at creation), and the VMs it gave.
    Column("selector", JSONB),
    Column("vms", JSONB, nullable=False, server_default=_EMPTY_LIST),
    Column("problems", JSONB, nullable=False, server_default=_EMPTY_LIST),
    Column("validated_at", DateTime(timezone=True)),
    # Set when an inventory change touched one of the plan's providers: validated again soon.
    Column("stale", Boolean, nullable=False, server_default="false"),
    Column("phase", String(16), nullable=False),
    Column("archived", Boolean, nullable=False, server_default="false"),
    Column("migration_id", String(36)),
    Column("revision", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_plans_revision", "revision"),
    Index("ix_plans_stale", "stale", postgresql_where=text("stale")),
)


class PlanRow(TypedDict):
    """A row of ``plans`` as the planner reads it: the columns, typed, in a plain dict (so
    ``dict(row)`` is still the values a change starts from). Built by ``plan_row``."""

    id: str
    name: str
    description: str
    source_provider: str
    target_provider: str
    target_namespace: str
    network_map: str
    storage_map: str
    migration_type: str
    target_power_state: str
    transfer_network: str | None
    naming: dict[str, Any]
    limits: dict[str, Any]
    cutover: datetime | None
    cutover_revision: int
    precopy_interval_minutes: int
    convert_guest: bool
    hooks: list[dict[str, Any]]
    selector: dict[str, Any] | None
    vms: list[dict[str, Any]]
    problems: list[dict[str, Any]]
    validated_at: datetime | None
    stale: bool
    phase: str
    archived: bool
    migration_id: str | None
    revision: int
    created_at: datetime
    updated_at: datetime


def plan_row(row: Mapping[Any, Any]) -> PlanRow:
    """A ``plans`` row as read (``select(plans)``, ``returning(plans)``) as a ``PlanRow``;
    a test keeps ``PlanRow``'s keys those of the table."""
    return cast(PlanRow, dict(row))


migrations = Table(
    "migrations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "plan_id", String(36), ForeignKey("planner.plans.id", ondelete="CASCADE"), nullable=False
    ),
    Column("number", Integer, nullable=False),
    Column("phase", String(16), nullable=False),
    Column("frozen", JSONB, nullable=False),
    Column("vms_total", Integer, nullable=False, server_default="0"),
    Column("vms_succeeded", Integer, nullable=False, server_default="0"),
    Column("vms_failed", Integer, nullable=False, server_default="0"),
    Column("vms_canceled", Integer, nullable=False, server_default="0"),
    # VMs an earlier migration of the plan migrated; this one skips them.
    Column("vms_skipped", Integer, nullable=False, server_default="0"),
    Column("cancel_requested", Boolean, nullable=False, server_default="false"),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("completed_at", DateTime(timezone=True)),
    Column("revision", BigInteger, nullable=False),
    UniqueConstraint("plan_id", "number", name="uq_migrations_plan_number"),
)

#: A migration's columns but ``frozen``: what status reads, every time. The frozen plan of
#: 1,000 VMs is megabytes of JSON that no status view shows.
migration_status = tuple(c for c in migrations.c if c.name != "frozen")

vms = Table(
    "vms",
    metadata,
    Column(
        "migration_id",
        String(36),
        ForeignKey("planner.migrations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("vm_id", String(253), primary_key=True),
    Column("plan_id", String(36), nullable=False, index=True),
    Column("name", String(253), nullable=False),
    Column("target_name", String(63), nullable=False),
    # shared.pipeline.PlanVmPhase: Pending, Running, Succeeded, Failed, Canceled.
    Column("phase", String(16), nullable=False),
    Column("step", String(32)),
    Column("cancel_requested", Boolean, nullable=False, server_default="false"),
    Column("started_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("error", JSONB),
    Column("target_vm", JSONB),
    Column("bytes_done", BigInteger, nullable=False, server_default="0"),
    Column("bytes_total", BigInteger, nullable=False, server_default="0"),
    Column("rate", BigInteger),
    Column("eta_seconds", Integer),
    Column("revision", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_vms_revision", "revision"),
)

steps = Table(
    "steps",
    metadata,
    Column("migration_id", String(36), primary_key=True),
    Column("vm_id", String(253), primary_key=True),
    Column("step", String(32), primary_key=True),
    Column("position", SmallInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempt", Integer, nullable=False, server_default="1"),
    Column("started_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("progress_completed", BigInteger, nullable=False, server_default="0"),
    Column("progress_total", BigInteger, nullable=False, server_default="0"),
    Column("error", JSONB),
    Column("detail", JSONB, nullable=False, server_default=_EMPTY_OBJ),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ForeignKeyConstraint(
        ["migration_id", "vm_id"],
        ["planner.vms.migration_id", "planner.vms.vm_id"],
        ondelete="CASCADE",
    ),
)

tasks = Table(
    "tasks",
    metadata,
    Column("migration_id", String(36), primary_key=True),
    Column("vm_id", String(253), primary_key=True),
    Column("step", String(32), primary_key=True),
    Column("task", String(253), primary_key=True),
    Column("name", String(253), nullable=False, server_default=""),
    Column("state", String(16), nullable=False),
    Column("attempt", Integer, nullable=False, server_default="1"),
    Column("started_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("progress_completed", BigInteger, nullable=False, server_default="0"),
    Column("progress_total", BigInteger, nullable=False, server_default="0"),
    Column("rate", BigInteger),
    Column("eta_seconds", Integer),
    # When the progress service observed ``progress_completed``: older samples are ignored.
    Column("observed_at", DateTime(timezone=True)),
    Column("error", JSONB),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ForeignKeyConstraint(
        ["migration_id", "vm_id"],
        ["planner.vms.migration_id", "planner.vms.vm_id"],
        ondelete="CASCADE",
    ),
)
