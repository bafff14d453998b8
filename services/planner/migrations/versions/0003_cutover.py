"""A plan's cutover time and the revision of its changes.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

S = "planner"


def upgrade() -> None:
    op.add_column("plans", sa.Column("cutover", sa.DateTime(timezone=True)), schema=S)
    op.add_column(
        "plans",
        sa.Column("cutover_revision", sa.Integer(), server_default="0", nullable=False),
        schema=S,
    )


def downgrade() -> None:
    op.drop_column("plans", "cutover_revision", schema=S)
    op.drop_column("plans", "cutover", schema=S)
