"""Tables of the progress service, all in its own PostgreSQL schema ``progress``.

No other service reads them; they change only through this service's migrations.
"""

from sqlalchemy.orm import DeclarativeBase

from shared.db.messaging import service_metadata

metadata = service_metadata("progress")


class Base(DeclarativeBase):
    metadata = metadata


inbox = metadata.tables["progress.inbox"]
outbox = metadata.tables["progress.outbox"]
