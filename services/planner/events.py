"""What the planner consumes and publishes.

Consumes inventory changes (to re-validate plans) and the orchestrator's VM step and outcome
events (to project plan status); follows progress on core NATS. Publishes ``PLAN_STARTED``,
``PLAN_CANCEL_REQUESTED`` and ``PLAN_STATUS`` through its outbox.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared import catalog
from shared.bus import Subscription
from shared.service.runtime import Runtime


def subscriptions(runtime: Runtime) -> Sequence[Subscription]:
    """Durable consumers of this service; created at start-up so nothing published for it
    is lost, whether or not a handler is attached yet."""
    return (
        Subscription(
            name="planner-inventory",
            events=(catalog.PROVIDER_STATUS, catalog.INVENTORY_CHANGED),
            description="Provider status and inventory changes that can invalidate plans.",
        ),
        Subscription(
            name="planner-migrations",
            events=(catalog.VM_STEP_CHANGED, catalog.VM_FINISHED),
            description="VM pipeline steps and outcomes, projected into plan status.",
        ),
    )
