"""The access table (``shared.service.access``) covers every route every service serves,
and every resource it names is granted by one of the chart's roles: a new route without
its row would be refused to everyone under Kubernetes authorization."""

from __future__ import annotations

import importlib

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from shared.service import access, operations
from shared.service.auth import granted_by

SERVICES = ("inventory", "planner", "orchestrator", "progress")


def _routes(routes: list[BaseRoute]) -> list[APIRoute]:
    out: list[APIRoute] = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if isinstance(included, APIRouter):
            out += _routes(included.routes)
        elif isinstance(route, APIRoute):
            out.append(route)
    return out


def test_every_route_is_declared_and_granted() -> None:
    missing, ungranted = [], []
    for name in SERVICES:
        spec = importlib.import_module(f"services.{name}").SPEC
        routes = _routes(spec.router.routes) + _routes(operations.build_router(spec.base).routes)
        for route in routes:
            for method in route.methods or ():
                found = access.lookup(method, route.path, spec.base)
                if found is None:
                    missing.append(f"{name}: {method} {route.path}")
                elif granted_by(found) is None:
                    ungranted.append(f"{name}: {method} {route.path} ({found})")
    assert missing == []
    assert ungranted == []


def test_roles_widen() -> None:
    assert granted_by(access.Access("plans", "list")) == "viewer"
    assert granted_by(access.Access("plans/start", "create")) == "operator"
    assert granted_by(access.Access("providers", "create")) == "admin"
    assert granted_by(access.Access("deadletters/replay", "create")) == "admin"
