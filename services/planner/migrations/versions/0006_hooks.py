"""Hooks (``planner.hooks``) and a plan's hooks for every VM (``plans.hooks``; a VM's own
``hooks`` live in the ``vms`` JSON).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

S = "planner"


def upgrade() -> None:
    op.create_table(
        "hooks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("image", sa.String(512), nullable=False),
        sa.Column("playbook", sa.Text()),
        sa.Column("service_account", sa.String(253)),
        sa.Column("deadline_seconds", sa.Integer(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=S,
    )
    op.add_column(
        "plans",
        sa.Column("hooks", JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        schema=S,
    )


def downgrade() -> None:
    op.drop_column("plans", "hooks", schema=S)
    op.drop_table("hooks", schema=S)
