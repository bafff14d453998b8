"""Tables of the orchestrator service, all in its own PostgreSQL schema ``orchestrator``.

No other service reads them; they change only through this service's migrations.
"""

from sqlalchemy.orm import DeclarativeBase

from shared.db.messaging import service_metadata

metadata = service_metadata("orchestrator")


class Base(DeclarativeBase):
    metadata = metadata


inbox = metadata.tables["orchestrator.inbox"]
outbox = metadata.tables["orchestrator.outbox"]
