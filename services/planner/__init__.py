"""The planner service (see the package modules for what it owns)."""

from pathlib import Path

from services.planner import api, db, domain, events
from shared.apiroutes import ROUTES
from shared.service.spec import ServiceSpec

SPEC = ServiceSpec(
    name="planner",
    title="Planner",
    summary="Network and storage maps, hooks, migration plans, their validation and live status.",
    port=8102,
    routes=ROUTES["planner"],
    router=api.router,
    metadata=db.metadata,
    migrations=Path(__file__).parent / "migrations",
    subscriptions=events.subscriptions,
    domain=domain.running,
)
