"""What the orchestrator consumes and publishes.

Consumes ``PLAN_STARTED`` and ``PLAN_CANCEL_REQUESTED``; publishes ``VM_STEP_CHANGED``,
``VM_FINISHED``, ``POPULATOR_POD_STARTED`` and ``POPULATOR_POD_FINISHED`` through its outbox.
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
            name="orchestrator-plans",
            events=(catalog.PLAN_STARTED, catalog.PLAN_CANCEL_REQUESTED),
            description="Plans to run and cancellations of running ones.",
            # A plan start fans out into many VMs; it must not be retried in a hurry.
            concurrency=4,
        ),
    )
