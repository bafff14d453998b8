"""Providers and the normalized inventory objects.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

S = "inventory"


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("revision_seq", schema=S)))
    jsonb = postgresql.JSONB()
    op.create_table(
        "providers",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("url", sa.Text, nullable=False, server_default=""),
        sa.Column("settings", jsonb, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("tls", jsonb, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("secret_namespace", sa.String(63), nullable=False),
        sa.Column("secret_name", sa.String(253), nullable=False),
        sa.Column("phase", sa.String(32), nullable=False),
        sa.Column("conditions", jsonb, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("certificate", jsonb),
        sa.Column("facts", jsonb, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("counts", jsonb, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("generation", sa.Integer, nullable=False, server_default="1"),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("last_refresh", sa.DateTime(timezone=True)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_providers"),
        sa.UniqueConstraint("name", name="uq_providers_name"),
        schema=S,
    )
    op.create_table(
        "objects",
        sa.Column("provider_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("id", sa.String(253), nullable=False),
        sa.Column("name", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.String(64), nullable=False, server_default=""),
        sa.Column("parent", sa.String(253), nullable=False, server_default=""),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("data", jsonb, nullable=False),
        sa.Column("concerns", jsonb, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("concern_level", sa.SmallInteger, nullable=False, server_default="0"),
        sa.Column(
            "concern_categories",
            postgresql.ARRAY(sa.String(16)),
            nullable=False,
            server_default="{}",
        ),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default="false"),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("provider_id", "kind", "id", name="pk_objects"),
        schema=S,
    )
    op.create_index(
        "ix_objects_listing",
        "objects",
        ["provider_id", "kind", "name", "id"],
        schema=S,
        postgresql_where=sa.text("NOT deleted"),
    )
    op.create_index(
        "ix_objects_status",
        "objects",
        ["provider_id", "kind", sa.text("lower(status)")],
        schema=S,
        postgresql_where=sa.text("NOT deleted"),
    )
    op.create_index("ix_objects_revision", "objects", ["revision"], schema=S)
    op.create_index(
        "ix_objects_kind_revision", "objects", ["provider_id", "kind", "revision"], schema=S
    )


def downgrade() -> None:
    op.drop_table("objects", schema=S)
    op.drop_table("providers", schema=S)
    op.execute(sa.schema.DropSequence(sa.Sequence("revision_seq", schema=S)))
