"""Prometheus metrics of the bus, shared by every service (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PUBLISHED = Counter(
    "hoist_events_published_total",
    "Events published, by CloudEvents type and result (stored, duplicate, core).",
    ["type", "result"],
)
HANDLED = Counter(
    "hoist_events_handled_total",
    "Messages handled by a consumer, by outcome (ack, retry, deadletter).",
    ["consumer", "type", "outcome"],
)
HANDLER_SECONDS = Histogram(
    "hoist_event_handler_seconds",
    "Time a handler took, successful or not.",
    ["consumer"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600),
)
IN_FLIGHT = Gauge("hoist_events_in_flight", "Messages being handled now.", ["consumer"])
DEADLETTERED = Counter(
    "hoist_events_deadlettered_total",
    "Messages moved to the dead-letter subject, by reason.",
    ["consumer", "reason"],
)
