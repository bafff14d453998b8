"""The progress service (see the package modules for what it owns)."""

from pathlib import Path

from services.progress import api, db, domain, events
from shared.apiroutes import ROUTES
from shared.service.spec import ServiceSpec

SPEC = ServiceSpec(
    name="progress",
    title="Progress",
    summary="Pulls populator pods' metrics into PostgreSQL and publishes disk and VM progress.",
    port=8104,
    routes=ROUTES["progress"],
    router=api.router,
    metadata=db.metadata,
    migrations=Path(__file__).parent / "migrations",
    subscriptions=events.subscriptions,
    domain=domain.running,
)
