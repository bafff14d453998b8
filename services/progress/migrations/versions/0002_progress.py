"""Disks being populated (latest sample) and their downsampled history.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

S = "progress"


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("rev_seq", schema=S)))
    op.create_table(
        "disks",
        sa.Column("disk_id", sa.String(253), nullable=False),
        sa.Column("plan_id", sa.String(253), nullable=False),
        sa.Column("migration_id", sa.String(253), nullable=False),
        sa.Column("vm_id", sa.String(253), nullable=False),
        sa.Column("cluster_id", sa.String(253), nullable=False),
        sa.Column("namespace", sa.String(253), nullable=False),
        sa.Column("pod", sa.String(253), nullable=False),
        sa.Column("pod_ip", sa.String(64)),
        sa.Column("metrics_port", sa.Integer, nullable=False),
        sa.Column("metrics_scheme", sa.String(8), nullable=False),
        sa.Column("owner_uid", sa.String(253), nullable=False),
        sa.Column("populator_kind", sa.String(64), nullable=False, server_default=""),
        sa.Column("total_bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("bytes_done", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("percent", sa.Float, nullable=False, server_default="0"),
        sa.Column("rate", sa.Float),
        sa.Column("eta_seconds", sa.Float),
        sa.Column("state", sa.String(16), nullable=False, server_default="running"),
        sa.Column("error", sa.Text),
        sa.Column("source", sa.String(16), nullable=False, server_default="event"),
        sa.Column("rev", sa.BigInteger, nullable=False),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("observed_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("disk_id", name="pk_disks"),
        schema=S,
    )
    op.create_index("ix_progress_disks_plan_id", "disks", ["plan_id"], schema=S)
    op.create_index("ix_progress_disks_vm_id", "disks", ["vm_id"], schema=S)
    op.create_index("ix_progress_disks_rev", "disks", ["rev"], schema=S)
    op.create_table(
        "history",
        sa.Column("disk_id", sa.String(253), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bytes_done", sa.BigInteger, nullable=False),
        sa.Column("percent", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("disk_id", "at", name="pk_history"),
        schema=S,
    )
    op.create_index("ix_history_at", "history", ["at"], schema=S)


def downgrade() -> None:
    op.drop_table("history", schema=S)
    op.drop_table("disks", schema=S)
    op.execute(sa.schema.DropSequence(sa.Sequence("rev_seq", schema=S)))
