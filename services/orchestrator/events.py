"""What the orchestrator consumes and publishes.

Consumes ``PLAN_STARTED`` (in parts), ``PLAN_CANCEL_REQUESTED`` and
``PLAN_CUTOVER_CHANGED``, each applied exactly
once with its inbox claim (``intake``); publishes ``VM_STEP_CHANGED`` and ``VM_FINISHED``
through its outbox (``recording``). ``POPULATOR_POD_STARTED`` and ``POPULATOR_POD_FINISHED``
are published by the populator controller process, straight to JetStream with ids derived
from the pod's uid.

The journey of one disk starts here, when the planner's ``plan.started`` arrives.

Next: services/orchestrator/intake.py
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.orchestrator import intake
from shared import catalog
from shared import envelope as env
from shared.bus import Subscription
from shared.db.messaging import idempotent
from shared.service.runtime import Runtime

PLANS_CONSUMER = "orchestrator-plans"


def subscriptions(runtime: Runtime) -> Sequence[Subscription]:
    """Durable consumers of this service; created at start-up so nothing published for it
    is lost, whether or not a handler is attached yet."""

    async def effect(event: env.Envelope[Any], session: Any) -> None:
        if event.type == catalog.PLAN_STARTED.ce_type:
            await intake.accept_part(event, session)
        elif event.type == catalog.PLAN_CUTOVER_CHANGED.ce_type:
            await intake.accept_cutover(event, session)
        else:
            await intake.accept_cancel(event, session)

    apply = idempotent(runtime.sessionmaker, runtime.inbox, PLANS_CONSUMER, effect)

    async def handler(event: env.Envelope[Any]) -> None:
        await apply(event)
        if runtime.domain is not None:  # the runner takes the new work at once
            runtime.domain.runner.wake()

    return (
        Subscription(
            name=PLANS_CONSUMER,
            events=(
                catalog.PLAN_STARTED,
                catalog.PLAN_CANCEL_REQUESTED,
                catalog.PLAN_CUTOVER_CHANGED,
            ),
            description="Plans to run, cancellations and cutover changes of running ones.",
            handler=handler,
            concurrency=4,
        ),
    )
