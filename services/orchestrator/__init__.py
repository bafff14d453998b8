"""The orchestrator service (see the package modules for what it owns)."""

from pathlib import Path

from services.orchestrator import api, db, domain, events
from shared.apiroutes import ROUTES
from shared.service.spec import ServiceSpec

SPEC = ServiceSpec(
    name="orchestrator",
    title="Orchestrator",
    summary="Runs each VM's migration pipeline: populators, PVCs, the KubeVirt VM, cleanup.",
    port=8103,
    routes=ROUTES["orchestrator"],
    router=api.router,
    metadata=db.metadata,
    migrations=Path(__file__).parent / "migrations",
    subscriptions=events.subscriptions,
    domain=domain.running,
)
