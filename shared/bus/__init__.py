"""Hoist's message bus over NATS: publishing events and consuming them reliably.

``PermanentError`` and ``RetryLater`` (``shared.errors``) are re-exported: they are what a
handler raises to say how its message is treated.
"""

from shared.bus.connecting import Bus, BusUnavailable, Published
from shared.bus.consuming import Consumer, Subscription
from shared.errors import PermanentError, RetryLater

__all__ = [
    "Bus",
    "BusUnavailable",
    "Consumer",
    "PermanentError",
    "Published",
    "RetryLater",
    "Subscription",
]
