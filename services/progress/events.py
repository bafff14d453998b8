"""What the progress service consumes and publishes.

Consumes ``POPULATOR_POD_STARTED`` and ``POPULATOR_POD_FINISHED`` (which pods to scrape);
publishes ``DISK_PROGRESS`` and ``VM_PROGRESS`` on core NATS, when they change.
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
            name="progress-populators",
            events=(catalog.POPULATOR_POD_STARTED, catalog.POPULATOR_POD_FINISHED),
            description="Populator pods to start and stop scraping.",
        ),
    )
