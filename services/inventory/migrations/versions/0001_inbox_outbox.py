"""The transactional inbox and outbox of the inventory service.

Revision ID: 0001
Revises:
"""

from alembic import op

from shared.db import messaging

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    messaging.create_tables(op.get_bind(), "inventory")


def downgrade() -> None:
    messaging.drop_tables(op.get_bind(), "inventory")
