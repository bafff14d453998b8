"""Bearer-token authentication of every API route.

Tokens come from settings (``HOIST_AUTH_TOKENS``) for now; the Kubernetes TokenReview
comes with the Helm deployment. Comparison is constant-time so response timing tells an
attacker nothing about how much of a guess was right.
"""

from __future__ import annotations

import hmac

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

_bearer = HTTPBearer(auto_error=False, description="A token from HOIST_AUTH_TOKENS.")


def _refuse(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": 'Bearer realm="hoist"'},
    )


async def require_token(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
) -> None:
    auth = request.app.state.settings.auth
    if auth.disabled:
        return
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _refuse("missing bearer token: send 'Authorization: Bearer <token>'")
    offered = credentials.credentials.encode()
    valid = False
    for token in auth.tokens:
        # No early exit: every configured token is compared, whatever matches.
        valid |= hmac.compare_digest(offered, token.get_secret_value().encode())
    if not auth.tokens:
        raise _refuse("this service has no API tokens configured (HOIST_AUTH_TOKENS)")
    if not valid:
        raise _refuse("invalid bearer token")
