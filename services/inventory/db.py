"""Tables of the inventory service, all in its own PostgreSQL schema ``inventory``.

No other service reads them; they change only through this service's migrations.

- ``providers``: one row per provider, without secrets: the credentials live in a Kubernetes
  Secret that ``secret_name`` names.
- ``objects``: every inventory object of every provider in one normalized shape (see
  ``items.Item``), with its raw detail in JSONB. A deleted object stays as a tombstone
  (``deleted``) for a while so that change streams resumed from an older revision see it go.
- ``revision_seq``: one sequence numbers every change of a provider or an object; an SSE
  client resumes from the last revision it saw, an ETag is the revision of what it covers.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    Sequence,
    SmallInteger,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase

from shared.db.messaging import service_metadata

metadata = service_metadata("inventory")


class Base(DeclarativeBase):
    metadata = metadata


inbox = metadata.tables["inventory.inbox"]
outbox = metadata.tables["inventory.outbox"]

revision_seq = Sequence("revision_seq", metadata=metadata)

providers = Table(
    "providers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("type", String(16), nullable=False),
    Column("url", Text, nullable=False, server_default=""),
    Column("settings", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("tls", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("secret_namespace", String(63), nullable=False),
    Column("secret_name", String(253), nullable=False),
    Column("phase", String(32), nullable=False),
    Column("conditions", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("certificate", JSONB),
    Column("facts", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("counts", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("generation", Integer, nullable=False, server_default="1"),
    Column("revision", BigInteger, nullable=False),
    Column("last_refresh", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

objects = Table(
    "objects",
    metadata,
    Column("provider_id", String(36), primary_key=True),
    Column("kind", String(40), primary_key=True),
    Column("id", String(253), primary_key=True),
    Column("name", Text, nullable=False, server_default=""),
    Column("status", String(64), nullable=False, server_default=""),
    Column("parent", String(253), nullable=False, server_default=""),
    Column("revision", BigInteger, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("data", JSONB, nullable=False),
    Column("concerns", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    # Highest concern category (3 Critical, 2 Warning, 1 Information, 0 none) and the set of
    # categories present: filters and sorts by concern need no JSONB scan.
    Column("concern_level", SmallInteger, nullable=False, server_default="0"),
    Column("concern_categories", ARRAY(String(16)), nullable=False, server_default="{}"),
    Column("deleted", Boolean, nullable=False, server_default="false"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index(
        "ix_objects_listing",
        "provider_id",
        "kind",
        "name",
        "id",
        postgresql_where=text("NOT deleted"),
    ),
    # Status filters (case-insensitive) and their counts, without visiting the rows.
    Index(
        "ix_objects_status",
        "provider_id",
        "kind",
        func.lower(text("status")),
        postgresql_where=text("NOT deleted"),
    ),
    Index("ix_objects_revision", "revision"),
    Index("ix_objects_kind_revision", "provider_id", "kind", "revision"),
)
