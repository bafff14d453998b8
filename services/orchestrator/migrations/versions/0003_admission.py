"""Admission before the source is touched, and the plan's cutover.

A VM is now admitted at its first step and holds a VM slot (``holds_vm``) until its target
VM exists, besides its disk slots (``holding``) until its disks are copied. ``admitted_at``
and ``released_at`` date both ends, for the waiting VMs' estimates. A migration keeps its
``cutover`` (no source VM powered off before it) and the revision of the last change.

VMs already past admission when this runs (holding disks, or past the copy) are marked
admitted, so an upgrade mid-plan does not admit them twice.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

S = "orchestrator"
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("migrations", sa.Column("cutover", TS, nullable=True), schema=S)
    op.add_column(
        "migrations",
        sa.Column("cutover_revision", sa.Integer, nullable=False, server_default="0"),
        schema=S,
    )
    op.add_column(
        "vms",
        sa.Column("holds_vm", sa.Boolean, nullable=False, server_default=sa.text("false")),
        schema=S,
    )
    op.add_column("vms", sa.Column("admitted_at", TS, nullable=True), schema=S)
    op.add_column("vms", sa.Column("released_at", TS, nullable=True), schema=S)
    op.execute(
        """
        UPDATE orchestrator.vms SET admitted_at = now(), released_at = now()
        WHERE phase <> 'Queued'
          AND (holding > 0 OR phase NOT IN ('Running')
               OR step IN ('VirtualMachineCreation', 'Cleanup', 'Completed'))
        """
    )
    op.create_index(
        "vms_source_holds_vm",
        "vms",
        ["source_provider"],
        schema=S,
        postgresql_where=sa.text("holds_vm"),
    )
    op.create_index(
        "vms_waiting",
        "vms",
        ["source_provider", "position"],
        schema=S,
        postgresql_where=sa.text("admitted_at IS NULL AND phase IN ('Queued', 'Running')"),
    )


def downgrade() -> None:
    op.drop_index("vms_waiting", "vms", schema=S)
    op.drop_index("vms_source_holds_vm", "vms", schema=S)
    for column in ("released_at", "admitted_at", "holds_vm"):
        op.drop_column("vms", column, schema=S)
    op.drop_column("migrations", "cutover_revision", schema=S)
    op.drop_column("migrations", "cutover", schema=S)
