"""The planner service (see the package modules for what it owns)."""

from pathlib import Path

from services.planner import api, db, domain, events
from shared.service.spec import ServiceSpec

SPEC = ServiceSpec(
    name="planner",
    title="Planner",
    summary="Network and storage maps, hooks, migration plans, their validation and live status.",
    port=8102,
    routes=(
        "/api/v1/plans",
        "/api/v1/networkmaps",
        "/api/v1/storagemaps",
        "/api/v1/hooks",
        "/api/v1/planner",
    ),
    router=api.router,
    metadata=db.metadata,
    migrations=Path(__file__).parent / "migrations",
    subscriptions=events.subscriptions,
    domain=domain.running,
)
