"""Who may call the API: bearer tokens, static or Kubernetes identities.

Two kinds of token, each turned on by a setting:

- static tokens (``HOIST_AUTH_STATIC``, ``HOIST_AUTH_TOKENS``): for development, each may do
  everything; compared in constant time so timing tells an attacker nothing;
- Kubernetes identities (``HOIST_AUTH_KUBERNETES``): a ServiceAccount or OIDC token, checked
  with a TokenReview and authorized per route with a SubjectAccessReview on Hoist's
  ``hoist.io`` resources (``shared.service.access``, ``shared.service.kubeauth``).

The decision is made once, before the body is read: ``shared.service.limits.Gate`` calls
``decide`` and marks the request admitted; the ``require_token`` dependency of every API
route keeps the OpenAPI security scheme and decides itself for a route mounted without
the gate. A refusal is 401 (no identity), 403 (an identity not allowed: the body says
who, what was refused, and which role grants it) or 503 (the cluster cannot be asked).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from shared.service import access as table
from shared.service.kubeauth import KubeAuth, ReviewUnavailable
from shared.settings import HoistSettings

_bearer = HTTPBearer(
    auto_error=False,
    description="A Kubernetes ServiceAccount or OIDC token (HOIST_AUTH_KUBERNETES), or a "
    "static development token (HOIST_AUTH_TOKENS).",
)

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="hoist"'}
ADMITTED = "hoist.admitted"
RETRY_SECONDS = 5


def bearer_credentials(authorization: str | None) -> HTTPAuthorizationCredentials | None:
    """The credentials of an ``Authorization`` header, read as ``HTTPBearer`` reads them."""
    scheme, credentials = get_authorization_scheme_param(authorization)
    if not (authorization and scheme and credentials) or scheme.lower() != "bearer":
        return None
    return HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials)


def _static_match(settings: HoistSettings, offered: str) -> bool:
    valid = False
    for token in settings.auth.tokens:
        # No early exit: every configured token is compared, whatever matches.
        valid |= hmac.compare_digest(offered.encode(), token.get_secret_value().encode())
    return valid


async def decide(
    scope: Scope, credentials: HTTPAuthorizationCredentials | None
) -> JSONResponse | None:
    """The refusal of this request (401, 403 or 503), or None: it may pass."""
    app = scope["app"]
    settings: HoistSettings = app.state.settings
    auth = settings.auth
    if auth.disabled:
        return None
    if credentials is None:
        return refused("missing bearer token: send 'Authorization: Bearer <token>'")
    offered = credentials.credentials
    if auth.static and _static_match(settings, offered):
        return None
    if not auth.kubernetes:
        if not auth.static:
            return refused(
                "this service accepts no tokens (HOIST_AUTH_STATIC and "
                "HOIST_AUTH_KUBERNETES are both off)"
            )
        if not auth.tokens:
            return refused("this service has no API tokens configured (HOIST_AUTH_TOKENS)")
        return refused("invalid bearer token")
    needed = route_access(scope)
    try:
        verdict = await kube_auth(app).decide(offered, needed)
    except ReviewUnavailable as exc:
        return JSONResponse(
            {"detail": f"cannot check the token now: {exc}; retry"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_SECONDS)},
        )
    if verdict.user is None:
        return refused("invalid bearer token: the cluster's TokenReview does not authenticate it")
    if needed is None:
        # A path no route answers: authenticated is enough to be told 404 or 405.
        return None
    if not verdict.allowed:
        return forbidden(verdict.user.username, needed, settings.kube.namespace, scope)
    return None


def route_access(scope: Scope) -> table.Access | None:
    """What the route this request reaches does (``access.ROUTES``); None: no route."""
    app = scope["app"]
    path = _matched_path(app.router.routes, scope, "")
    if path is None:
        return None
    found = table.lookup(scope["method"], path, app.state.spec.base)
    # Declared or not, a matched route needs a decision: an undeclared one is refused
    # (a resource no role grants), never allowed by omission.
    return found or table.Access(f"undeclared:{path}", scope["method"].lower())


def _matched_path(routes: Sequence[BaseRoute], scope: Scope, prefix: str) -> str | None:
    """The declared path of the route that fully matches, looking into included routers
    (FastAPI keeps them as one entry holding the ``original_router``)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if isinstance(included, APIRouter):
            context = getattr(route, "include_context", None)
            inner = prefix + (getattr(context, "prefix", "") or "")
            found = _matched_path(included.routes, scope, inner)
            if found is not None:
                return found
            continue
        path = getattr(route, "path", None)
        if path is None:
            continue
        local = dict(scope)
        if prefix:
            if not scope["path"].startswith(prefix):
                continue
            local["path"] = scope["path"][len(prefix) :]
        if route.matches(local)[0] is Match.FULL:
            return prefix + str(path)
    return None


def kube_auth(app: Any) -> KubeAuth:
    found: KubeAuth | None = getattr(app.state, "kube_auth", None)
    if found is None:
        settings: HoistSettings = app.state.settings
        found = app.state.kube_auth = KubeAuth(settings.auth, settings.kube)
    return found


def granted_by(needed: table.Access) -> str | None:
    """The narrowest of the chart's roles that grants ``needed``."""
    for role in table.ROLES:
        for resources, verbs in table.ROLES[role]:
            if needed.resource in resources and needed.verb in verbs:
                return role
    return None


def forbidden(user: str, needed: table.Access, namespace: str, scope: Scope) -> JSONResponse:
    role = granted_by(needed)
    hint = (
        f"; the {role} ClusterRole grants it (bind it with a RoleBinding in namespace "
        f'"{namespace}" or a ClusterRoleBinding)'
        if role
        else ""
    )
    detail = (
        f'User "{user}" cannot {needed.verb} resource "{needed.resource}" in API group '
        f'"{table.GROUP}" in the namespace "{namespace}" '
        f"({scope['method']} {scope['path']}){hint}"
    )
    return JSONResponse({"detail": detail}, status_code=status.HTTP_403_FORBIDDEN)


def refused(detail: str) -> JSONResponse:
    """The 401 answer, byte for byte what FastAPI answers ``require_token``'s exception with."""
    return JSONResponse(
        {"detail": detail}, status_code=status.HTTP_401_UNAUTHORIZED, headers=dict(CHALLENGE)
    )


async def require_token(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
) -> None:
    if request.scope.get(ADMITTED):
        return
    response = await decide(request.scope, credentials)
    if response is not None:
        raise HTTPException(
            status_code=response.status_code,
            detail=_detail(response),
            headers={
                k: v
                for k, v in response.headers.items()
                if k not in ("content-length", "content-type")
            },
        )


def _detail(response: JSONResponse) -> Any:
    return json.loads(bytes(response.body))["detail"]
