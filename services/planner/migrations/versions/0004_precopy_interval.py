"""A plan's precopy interval (warm migration): minutes between precopies.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

S = "planner"


def upgrade() -> None:
    op.add_column(
        "plans",
        sa.Column("precopy_interval_minutes", sa.Integer(), server_default="60", nullable=False),
        schema=S,
    )


def downgrade() -> None:
    op.drop_column("plans", "precopy_interval_minutes", schema=S)
