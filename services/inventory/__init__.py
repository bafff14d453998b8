"""The inventory service (see the package modules for what it owns)."""

from pathlib import Path

from services.inventory import api, db, domain, events
from shared.apiroutes import ROUTES
from shared.service.spec import ServiceSpec

SPEC = ServiceSpec(
    name="inventory",
    title="Inventory",
    summary="Providers and the live inventories of oVirt, OpenStack and target clusters.",
    port=8101,
    routes=ROUTES["inventory"],
    router=api.router,
    metadata=db.metadata,
    migrations=Path(__file__).parent / "migrations",
    subscriptions=events.subscriptions,
    domain=domain.running,
)
