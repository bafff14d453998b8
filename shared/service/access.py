"""What each API route does, as a Kubernetes authorizer sees it: one declared table.

Hoist's API objects are not Kubernetes objects, but who may touch them is decided with
Kubernetes RBAC (``shared.service.kubeauth``): a route is a verb on a resource of the
``hoist.io`` API group, asked of the cluster with a SubjectAccessReview. So a user's
ServiceAccount (or OIDC identity) and ordinary Roles and bindings decide who may start a
plan, and ``kubectl auth can-i create plans/start.hoist.io`` answers what the API will.

The chart's ``hoist-viewer``, ``hoist-operator`` and ``hoist-admin`` ClusterRoles grant
exactly the resources named here (``ROLES``); a test checks that every route of every
service is in ``ROUTES`` and that every resource in ``ROUTES`` is in some role.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "hoist.io"
#: Where operation routes (status, dead letters) sit in a path: each service's own base.
SERVICE = "{service}"


@dataclass(frozen=True)
class Access:
    """A verb on a resource (``plans``) or subresource (``plans/start``) of ``hoist.io``."""

    resource: str
    verb: str

    @property
    def subresource(self) -> str:
        return self.resource.partition("/")[2]

    @property
    def base(self) -> str:
        return self.resource.partition("/")[0]

    def __str__(self) -> str:
        return f'verb "{self.verb}" on "{self.resource}" in API group "{GROUP}"'


def _crud(path: str, resource: str) -> dict[tuple[str, str], Access]:
    return {
        ("GET", path): Access(resource, "list"),
        ("POST", path): Access(resource, "create"),
        ("GET", f"{path}/{{ref}}"): Access(resource, "get"),
        ("PATCH", f"{path}/{{ref}}"): Access(resource, "patch"),
        ("DELETE", f"{path}/{{ref}}"): Access(resource, "delete"),
    }


#: (method, route path as FastAPI declares it) -> what it does. A protected route missing
#: here is refused (403) when Kubernetes authorization is on: never allowed by omission.
ROUTES: dict[tuple[str, str], Access] = {
    # inventory
    **_crud("/api/v1/providers", "providers"),
    ("GET", "/api/v1/providers/certificate"): Access("providers/certificate", "get"),
    ("POST", "/api/v1/providers/{ref}/refresh"): Access("providers/refresh", "create"),
    ("GET", "/api/v1/providers/{ref}/{collection}"): Access("providers/inventory", "list"),
    ("GET", "/api/v1/providers/{ref}/{collection}/{object_id:path}"): Access(
        "providers/inventory", "get"
    ),
    ("GET", "/api/v1/inventory/events"): Access("providers", "watch"),
    # planner
    **_crud("/api/v1/networkmaps", "networkmaps"),
    **_crud("/api/v1/storagemaps", "storagemaps"),
    **_crud("/api/v1/plans", "plans"),
    **_crud("/api/v1/hooks", "hooks"),
    ("GET", "/api/v1/plans/{ref}/definition/vms"): Access("plans", "get"),
    ("POST", "/api/v1/plans/{ref}/validate"): Access("plans/validate", "create"),
    ("POST", "/api/v1/plans/{ref}/start"): Access("plans/start", "create"),
    ("POST", "/api/v1/plans/{ref}/cancel"): Access("plans/cancel", "create"),
    ("PUT", "/api/v1/plans/{ref}/cutover"): Access("plans/cutover", "update"),
    ("POST", "/api/v1/plans/{ref}/archive"): Access("plans/archive", "create"),
    ("POST", "/api/v1/plans/{ref}/unarchive"): Access("plans/unarchive", "create"),
    ("GET", "/api/v1/plans/{plan}/vms"): Access("plans/status", "list"),
    ("GET", "/api/v1/plans/{plan}/vms/{vm}"): Access("plans/status", "get"),
    ("GET", "/api/v1/plans/{plan}/migrations"): Access("plans/status", "list"),
    ("GET", "/api/v1/planner/events"): Access("plans", "watch"),
    # orchestrator
    ("GET", "/api/v1/migrations"): Access("migrations", "list"),
    ("GET", "/api/v1/migrations/{migration_id}"): Access("migrations", "get"),
    ("GET", "/api/v1/migrations/{migration_id}/vms/{vm_id}"): Access("migrations", "get"),
    # progress
    ("GET", "/api/v1/progress/plans/{plan_id}"): Access("progress", "get"),
    ("GET", "/api/v1/progress/vms/{vm_id}"): Access("progress", "get"),
    ("GET", "/api/v1/progress/disks/{disk_id}"): Access("progress", "get"),
    ("GET", "/api/v1/progress/events"): Access("progress", "watch"),
    # every service's operations (shared.service.operations)
    ("GET", f"/api/v1/{SERVICE}/status"): Access("services/status", "get"),
    ("GET", f"/api/v1/{SERVICE}/deadletters"): Access("deadletters", "list"),
    ("POST", f"/api/v1/{SERVICE}/deadletters/{{sequence}}/replay"): Access(
        "deadletters/replay", "create"
    ),
    ("DELETE", f"/api/v1/{SERVICE}/deadletters/{{sequence}}"): Access("deadletters", "delete"),
}

_READ = ("get", "list", "watch")
_WRITE = ("create", "update", "patch", "delete")

#: The chart's ClusterRoles (name suffix -> rules): each wider one aggregates the narrower
#: (``hoist-operator`` has every viewer rule, ``hoist-admin`` every operator rule).
ROLES: dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "viewer": [
        (("providers", "providers/inventory", "networkmaps", "storagemaps", "plans", "hooks",
          "plans/status", "migrations", "progress", "services/status"), _READ),
    ],
    "operator": [
        (("networkmaps", "storagemaps", "plans"), _WRITE),
        (("plans/validate", "plans/start", "plans/cancel", "plans/archive",
          "plans/unarchive", "providers/refresh"), ("create",)),
        (("plans/cutover",), ("update",)),
    ],
    "admin": [
        (("providers", "hooks"), _WRITE),
        (("providers/certificate",), ("get",)),
        (("deadletters",), ("get", "list", "delete")),
        (("deadletters/replay",), ("create",)),
    ],
}  # fmt: skip


def lookup(method: str, path: str, base: str) -> Access | None:
    """The access a route needs; ``base`` is the service's own (``/api/v1/planner``)."""
    found = ROUTES.get((method, path))
    if found is None and path.startswith(base + "/"):
        found = ROUTES.get((method, f"/api/v1/{SERVICE}" + path[len(base) :]))
    return found


def role_rules(role: str) -> list[dict[str, list[str]]]:
    """A role's own rules in RBAC form (without what it aggregates)."""
    return [
        {"apiGroups": [GROUP], "resources": list(resources), "verbs": list(verbs)}
        for resources, verbs in ROLES[role]
    ]
