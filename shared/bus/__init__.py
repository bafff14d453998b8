"""Hoist's message bus over NATS: publishing events and consuming them reliably."""

from shared.bus.connecting import Bus, BusUnavailable, Published
from shared.bus.consuming import Consumer, PermanentError, RetryLater, Subscription

__all__ = [
    "Bus",
    "BusUnavailable",
    "Consumer",
    "PermanentError",
    "Published",
    "RetryLater",
    "Subscription",
]
