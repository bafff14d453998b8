"""A plan's convertGuest: the opt-in ConvertGuest step for its VMs (a VM's own
``convertGuest`` in ``vms`` overrides it; that one lives in the ``vms`` JSON).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

S = "planner"


def upgrade() -> None:
    op.add_column(
        "plans",
        sa.Column("convert_guest", sa.Boolean(), server_default="false", nullable=False),
        schema=S,
    )


def downgrade() -> None:
    op.drop_column("plans", "convert_guest", schema=S)
