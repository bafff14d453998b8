"""Which service answers which API path: the URL prefixes each service serves.

Declared once here because three parties must agree on it: each service's ``SPEC`` (what it
mounts), the Helm chart's Ingress (``tools.chartgen`` copies the prefixes into it) and the
console (``services.console``), which serves the browser the APIs on its own origin by
forwarding each path to the service that owns it.
"""

from __future__ import annotations

ROUTES: dict[str, tuple[str, ...]] = {
    "inventory": ("/api/v1/providers", "/api/v1/inventory"),
    "planner": (
        "/api/v1/plans",
        "/api/v1/networkmaps",
        "/api/v1/storagemaps",
        "/api/v1/hooks",
        "/api/v1/planner",
    ),
    "orchestrator": ("/api/v1/migrations", "/api/v1/orchestrator"),
    "progress": ("/api/v1/progress",),
}


def service_of(path: str) -> str | None:
    """The service that owns ``path`` (a prefix matches whole segments only), or None."""
    for service, prefixes in ROUTES.items():
        for prefix in prefixes:
            if path == prefix or path.startswith(prefix + "/"):
                return service
    return None
