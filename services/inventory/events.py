"""What the inventory service consumes and publishes.

It publishes ``PROVIDER_STATUS`` and ``INVENTORY_CHANGED`` (through its outbox) and consumes
nothing durable: it learns about the world from the providers themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.bus import Subscription
from shared.service.runtime import Runtime


def subscriptions(runtime: Runtime) -> Sequence[Subscription]:
    """Durable consumers of this service; created at start-up so nothing published for it
    is lost, whether or not a handler is attached yet."""
    return ()
