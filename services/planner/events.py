"""What the planner consumes and publishes.

Consumes inventory changes (plans of a changed provider are marked stale and validated
again, see ``plans.Revalidator``) and the orchestrator's VM step and outcome events
(projected into plan status); follows progress on core NATS. Publishes ``PLAN_STARTED``,
``PLAN_CANCEL_REQUESTED``, ``PLAN_CUTOVER_CHANGED`` and ``PLAN_STATUS`` through its outbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.planner import plans
from services.planner.projecting import Projector
from shared import catalog
from shared import envelope as env
from shared.bus import Subscription
from shared.db.messaging import idempotent
from shared.service.runtime import Runtime

MIGRATIONS_CONSUMER = "planner-migrations"


def subscriptions(runtime: Runtime) -> Sequence[Subscription]:
    """Durable consumers of this service; created at start-up so nothing published for it
    is lost, whether or not a handler is attached yet."""

    async def on_inventory(event: env.Envelope[Any]) -> None:
        # Marking stale is idempotent, so a redelivery needs no inbox.
        await plans.mark_stale(runtime.engine, event.data.provider_id)

    return (
        Subscription(
            name="planner-inventory",
            events=(catalog.PROVIDER_STATUS, catalog.INVENTORY_CHANGED),
            description="Provider status and inventory changes that can invalidate plans.",
            handler=on_inventory,
        ),
        Subscription(
            name=MIGRATIONS_CONSUMER,
            events=(catalog.VM_STEP_CHANGED, catalog.VM_FINISHED),
            description="VM pipeline steps and outcomes, projected into plan status.",
            handler=idempotent(
                runtime.sessionmaker,
                runtime.inbox,
                MIGRATIONS_CONSUMER,
                Projector(runtime.outbox).apply,
            ),
        ),
    )
