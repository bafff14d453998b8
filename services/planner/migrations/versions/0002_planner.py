"""Maps, plans, and the status projected from migrations (migrations, VMs, steps, tasks).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

S = "planner"


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("revision_seq", schema=S)))
    op.create_table(
        "network_maps",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("source_provider", sa.String(length=36), nullable=False),
        sa.Column("target_provider", sa.String(length=36), nullable=False),
        sa.Column(
            "entries",
            postgresql.JSONB(astext_type=Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "problems",
            postgresql.JSONB(astext_type=Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_maps")),
        sa.UniqueConstraint("name", name=op.f("uq_network_maps_name")),
        schema="planner",
    )
    op.create_index(
        op.f("ix_planner_network_maps_source_provider"),
        "network_maps",
        ["source_provider"],
        unique=False,
        schema="planner",
    )
    op.create_index(
        op.f("ix_planner_network_maps_target_provider"),
        "network_maps",
        ["target_provider"],
        unique=False,
        schema="planner",
    )
    op.create_table(
        "storage_maps",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("source_provider", sa.String(length=36), nullable=False),
        sa.Column("target_provider", sa.String(length=36), nullable=False),
        sa.Column(
            "entries",
            postgresql.JSONB(astext_type=Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "problems",
            postgresql.JSONB(astext_type=Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_storage_maps")),
        sa.UniqueConstraint("name", name=op.f("uq_storage_maps_name")),
        schema="planner",
    )
    op.create_index(
        op.f("ix_planner_storage_maps_source_provider"),
        "storage_maps",
        ["source_provider"],
        unique=False,
        schema="planner",
    )
    op.create_index(
        op.f("ix_planner_storage_maps_target_provider"),
        "storage_maps",
        ["target_provider"],
        unique=False,
        schema="planner",
    )
    op.create_table(
        "plans",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("source_provider", sa.String(length=36), nullable=False),
        sa.Column("target_provider", sa.String(length=36), nullable=False),
        sa.Column("target_namespace", sa.String(length=63), nullable=False),
        sa.Column("network_map", sa.String(length=36), nullable=False),
        sa.Column("storage_map", sa.String(length=36), nullable=False),
        sa.Column("migration_type", sa.String(length=8), server_default="cold", nullable=False),
        sa.Column("target_power_state", sa.String(length=8), server_default="auto", nullable=False),
        sa.Column("transfer_network", sa.String(length=253), nullable=True),
        sa.Column(
            "naming",
            postgresql.JSONB(astext_type=Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "limits",
            postgresql.JSONB(astext_type=Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("selector", postgresql.JSONB(astext_type=Text()), nullable=True),
        sa.Column(
            "vms",
            postgresql.JSONB(astext_type=Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "problems",
            postgresql.JSONB(astext_type=Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("validated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stale", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("archived", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("migration_id", sa.String(length=36), nullable=True),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["network_map"],
            ["planner.network_maps.id"],
            name=op.f("fk_plans_network_map_network_maps"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["storage_map"],
            ["planner.storage_maps.id"],
            name=op.f("fk_plans_storage_map_storage_maps"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plans")),
        sa.UniqueConstraint("name", name=op.f("uq_plans_name")),
        schema="planner",
    )
    op.create_index(
        op.f("ix_planner_plans_network_map"),
        "plans",
        ["network_map"],
        unique=False,
        schema="planner",
    )
    op.create_index(
        op.f("ix_planner_plans_source_provider"),
        "plans",
        ["source_provider"],
        unique=False,
        schema="planner",
    )
    op.create_index(
        op.f("ix_planner_plans_storage_map"),
        "plans",
        ["storage_map"],
        unique=False,
        schema="planner",
    )
    op.create_index(
        op.f("ix_planner_plans_target_provider"),
        "plans",
        ["target_provider"],
        unique=False,
        schema="planner",
    )
    op.create_index("ix_plans_revision", "plans", ["revision"], unique=False, schema="planner")
    op.create_index(
        "ix_plans_stale",
        "plans",
        ["stale"],
        unique=False,
        schema="planner",
        postgresql_where=sa.text("stale"),
    )
    op.create_table(
        "migrations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("plan_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("frozen", postgresql.JSONB(astext_type=Text()), nullable=False),
        sa.Column("vms_total", sa.Integer(), server_default="0", nullable=False),
        sa.Column("vms_succeeded", sa.Integer(), server_default="0", nullable=False),
        sa.Column("vms_failed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("vms_canceled", sa.Integer(), server_default="0", nullable=False),
        sa.Column("vms_skipped", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), server_default="false", nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["planner.plans.id"],
            name=op.f("fk_migrations_plan_id_plans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migrations")),
        sa.UniqueConstraint("plan_id", "number", name="uq_migrations_plan_number"),
        schema="planner",
    )
    op.create_table(
        "vms",
        sa.Column("migration_id", sa.String(length=36), nullable=False),
        sa.Column("vm_id", sa.String(length=253), nullable=False),
        sa.Column("plan_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("target_name", sa.String(length=63), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", postgresql.JSONB(astext_type=Text()), nullable=True),
        sa.Column("target_vm", postgresql.JSONB(astext_type=Text()), nullable=True),
        sa.Column("bytes_done", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("bytes_total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("rate", sa.BigInteger(), nullable=True),
        sa.Column("eta_seconds", sa.Integer(), nullable=True),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["migration_id"],
            ["planner.migrations.id"],
            name=op.f("fk_vms_migration_id_migrations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("migration_id", "vm_id", name=op.f("pk_vms")),
        schema="planner",
    )
    op.create_index(
        op.f("ix_planner_vms_plan_id"), "vms", ["plan_id"], unique=False, schema="planner"
    )
    op.create_index("ix_vms_revision", "vms", ["revision"], unique=False, schema="planner")
    op.create_table(
        "steps",
        sa.Column("migration_id", sa.String(length=36), nullable=False),
        sa.Column("vm_id", sa.String(length=253), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default="1", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("progress_completed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("progress_total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("error", postgresql.JSONB(astext_type=Text()), nullable=True),
        sa.Column(
            "detail",
            postgresql.JSONB(astext_type=Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["migration_id", "vm_id"],
            ["planner.vms.migration_id", "planner.vms.vm_id"],
            name=op.f("fk_steps_migration_id_vms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("migration_id", "vm_id", "step", name=op.f("pk_steps")),
        schema="planner",
    )
    op.create_table(
        "tasks",
        sa.Column("migration_id", sa.String(length=36), nullable=False),
        sa.Column("vm_id", sa.String(length=253), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("task", sa.String(length=253), nullable=False),
        sa.Column("name", sa.String(length=253), server_default="", nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default="1", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("progress_completed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("progress_total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("rate", sa.BigInteger(), nullable=True),
        sa.Column("eta_seconds", sa.Integer(), nullable=True),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", postgresql.JSONB(astext_type=Text()), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["migration_id", "vm_id"],
            ["planner.vms.migration_id", "planner.vms.vm_id"],
            name=op.f("fk_tasks_migration_id_vms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("migration_id", "vm_id", "step", "task", name=op.f("pk_tasks")),
        schema="planner",
    )


def downgrade() -> None:
    for table in ("tasks", "steps", "vms", "migrations", "plans", "storage_maps", "network_maps"):
        op.drop_table(table, schema=S)
    op.execute(sa.schema.DropSequence(sa.Sequence("revision_seq", schema=S)))
