"""Bearer-token authentication of every API route.

Tokens come from settings (``HOIST_AUTH_TOKENS``) for now; the Kubernetes TokenReview
comes with the Helm deployment. Comparison is constant-time so response timing tells an
attacker nothing about how much of a guess was right.

The check runs twice with one verdict: ``shared.service.limits`` refuses a request before
its body is read (``refusal``, ``refused``), and the ``require_token`` dependency of every
API route keeps the OpenAPI security scheme and guards a route mounted without the gate.
"""

from __future__ import annotations

import hmac

from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from shared.settings import AuthSettings

_bearer = HTTPBearer(auto_error=False, description="A token from HOIST_AUTH_TOKENS.")

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="hoist"'}


def bearer_credentials(authorization: str | None) -> HTTPAuthorizationCredentials | None:
    """The credentials of an ``Authorization`` header, read as ``HTTPBearer`` reads them."""
    scheme, credentials = get_authorization_scheme_param(authorization)
    if not (authorization and scheme and credentials) or scheme.lower() != "bearer":
        return None
    return HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials)


def refusal(auth: AuthSettings, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    """Why these credentials are refused (the 401's detail), or None: they may pass."""
    if auth.disabled:
        return None
    if credentials is None or credentials.scheme.lower() != "bearer":
        return "missing bearer token: send 'Authorization: Bearer <token>'"
    offered = credentials.credentials.encode()
    valid = False
    for token in auth.tokens:
        # No early exit: every configured token is compared, whatever matches.
        valid |= hmac.compare_digest(offered, token.get_secret_value().encode())
    if not auth.tokens:
        return "this service has no API tokens configured (HOIST_AUTH_TOKENS)"
    if not valid:
        return "invalid bearer token"
    return None


def refused(detail: str) -> JSONResponse:
    """The 401 answer, byte for byte what FastAPI answers ``require_token``'s exception with."""
    return JSONResponse(
        {"detail": detail}, status_code=status.HTTP_401_UNAUTHORIZED, headers=dict(CHALLENGE)
    )


async def require_token(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
) -> None:
    detail = refusal(request.app.state.settings.auth, credentials)
    if detail is not None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED, detail=detail, headers=dict(CHALLENGE)
        )
