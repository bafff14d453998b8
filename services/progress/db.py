"""Tables of the progress service, all in its own PostgreSQL schema ``progress``.

No other service reads them; they change only through this service's migrations.

- ``disks``: one row per disk being (or last) populated: where its populator pod is (from
  the ``populator.pod.started`` event or the pod watch) and the latest sample (bytes, total,
  percent, rate, ETA, state). A later migration of the same disk replaces the row.
  ``rev`` (from ``rev_seq``) changes when *where to scrape* or the state changes, never on a
  sample: replicas load only rows with a newer ``rev`` each round.
- ``history``: a downsampled series per disk (one point per ``HOIST_PROGRESS_HISTORY_SECONDS``,
  at most ``HOIST_PROGRESS_HISTORY_POINTS`` per disk) for charts.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    Sequence,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.orm import DeclarativeBase

from shared.db.messaging import service_metadata

metadata = service_metadata("progress")


class Base(DeclarativeBase):
    metadata = metadata


inbox = metadata.tables["progress.inbox"]
outbox = metadata.tables["progress.outbox"]

rev_seq = Sequence("rev_seq", metadata=metadata)

disks = Table(
    "disks",
    metadata,
    Column("disk_id", String(253), primary_key=True),
    Column("plan_id", String(253), nullable=False, index=True),
    Column("migration_id", String(253), nullable=False),
    Column("vm_id", String(253), nullable=False, index=True),
    Column("cluster_id", String(253), nullable=False),
    Column("namespace", String(253), nullable=False),
    Column("pod", String(253), nullable=False),
    Column("pod_ip", String(64)),
    Column("metrics_port", Integer, nullable=False),
    Column("metrics_scheme", String(8), nullable=False),
    Column("owner_uid", String(253), nullable=False),
    Column("populator_kind", String(64), nullable=False, server_default=""),
    Column("total_bytes", BigInteger, nullable=False, server_default="0"),
    Column("bytes_done", BigInteger, nullable=False, server_default="0"),
    Column("percent", Float, nullable=False, server_default="0"),
    Column("rate", Float),
    Column("eta_seconds", Float),
    Column("state", String(16), nullable=False, server_default="running"),
    Column("error", Text),
    Column("source", String(16), nullable=False, server_default="event"),
    Column("rev", BigInteger, nullable=False, index=True),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("observed_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

history = Table(
    "history",
    metadata,
    Column("disk_id", String(253), primary_key=True),
    Column("at", DateTime(timezone=True), primary_key=True),
    Column("bytes_done", BigInteger, nullable=False),
    Column("percent", Float, nullable=False),
    Index("ix_history_at", "at"),
)
