"""The VM pipelines: migrations, VMs (the state machine) and their steps and tasks.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

S = "orchestrator"
EMPTY_LIST = sa.text("'[]'::jsonb")
EMPTY_OBJECT = sa.text("'{}'::jsonb")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "migrations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("plan_id", sa.String(36), nullable=False, server_default=""),
        sa.Column("plan_name", sa.String(253), nullable=False, server_default=""),
        sa.Column("header", JSONB, nullable=True),
        sa.Column("source_provider", sa.String(36), nullable=False, server_default=""),
        sa.Column("parts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("parts_seen", JSONB, nullable=False, server_default=EMPTY_LIST),
        sa.Column("vms_total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cancel_all", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("cancel_vms", JSONB, nullable=False, server_default=EMPTY_LIST),
        sa.Column("cancel_reason", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        schema=S,
    )
    op.create_table(
        "vms",
        sa.Column("migration_id", sa.String(36), primary_key=True),
        sa.Column("vm_id", sa.String(255), primary_key=True),
        sa.Column("plan_id", sa.String(36), nullable=False),
        sa.Column("source_provider", sa.String(36), nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("spec", JSONB, nullable=False),
        sa.Column("phase", sa.String(16), nullable=False, server_default="Queued"),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
        sa.Column("memory", JSONB, nullable=False, server_default=EMPTY_OBJECT),
        sa.Column("holding", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", JSONB, nullable=True),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("revision", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("next_run_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.ForeignKeyConstraint(["migration_id"], [f"{S}.migrations.id"], ondelete="CASCADE"),
        schema=S,
    )
    op.create_index(
        "vms_due",
        "vms",
        ["next_run_at"],
        schema=S,
        postgresql_where=sa.text("phase IN ('Queued', 'Running', 'Failing', 'Canceling')"),
    )
    op.create_index(
        "vms_source_holding",
        "vms",
        ["source_provider"],
        schema=S,
        postgresql_where=sa.text("holding > 0"),
    )
    op.create_table(
        "steps",
        sa.Column("migration_id", sa.String(36), primary_key=True),
        sa.Column("vm_id", sa.String(255), primary_key=True),
        sa.Column("step", sa.String(32), primary_key=True),
        sa.Column("task", sa.String(255), primary_key=True, server_default=""),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("completed_at", TS, nullable=True),
        sa.Column("progress_completed", sa.BigInteger, nullable=True),
        sa.Column("progress_total", sa.BigInteger, nullable=True),
        sa.Column("error", JSONB, nullable=True),
        sa.Column("detail", JSONB, nullable=False, server_default=EMPTY_OBJECT),
        sa.ForeignKeyConstraint(
            ["migration_id", "vm_id"],
            [f"{S}.vms.migration_id", f"{S}.vms.vm_id"],
            ondelete="CASCADE",
        ),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("steps", schema=S)
    op.drop_table("vms", schema=S)
    op.drop_table("migrations", schema=S)
