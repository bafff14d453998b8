"""Tables of the inventory service, all in its own PostgreSQL schema ``inventory``.

No other service reads them; they change only through this service's migrations.
"""

from sqlalchemy.orm import DeclarativeBase

from shared.db.messaging import service_metadata

metadata = service_metadata("inventory")


class Base(DeclarativeBase):
    metadata = metadata


inbox = metadata.tables["inventory.inbox"]
outbox = metadata.tables["inventory.outbox"]
