"""Tables of the planner service, all in its own PostgreSQL schema ``planner``.

No other service reads them; they change only through this service's migrations.
"""

from sqlalchemy.orm import DeclarativeBase

from shared.db.messaging import service_metadata

metadata = service_metadata("planner")


class Base(DeclarativeBase):
    metadata = metadata


inbox = metadata.tables["planner.inbox"]
outbox = metadata.tables["planner.outbox"]
