"""Prometheus metrics of the populator controller (served on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "hoist_populator_controller_reconciles_total",
    "Reconciles of user claims, by result (ok, conflict, error).",
    ["result"],
)
RECONCILE_SECONDS = Histogram(
    "hoist_populator_controller_reconcile_seconds",
    "Time one reconcile of a user claim took.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
QUEUE = Gauge("hoist_populator_controller_queue_depth", "User claims waiting to be reconciled.")
CLAIMS = Gauge(
    "hoist_populator_controller_claims", "User claims with a Hoist populator data source."
)
PODS_CREATED = Counter(
    "hoist_populator_controller_pods_created_total", "Populator pods created (recreations too)."
)
POD_FAILURES = Counter(
    "hoist_populator_controller_pod_failures_total", "Populator pods that ended Failed."
)
POPULATIONS = Counter(
    "hoist_populator_controller_populations_total",
    "User claims whose population ended, by outcome (succeeded, failed, abandoned).",
    ["outcome"],
)
