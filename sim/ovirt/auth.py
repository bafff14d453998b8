"""Who may call the simulated engine's API, decided as the engine's servlet filters decide
(ovirt-engine ``aaa/filters``: RestApiSessionValidationFilter, SsoRestApiAuthFilter,
EnforceAuthFilter, RestApiSessionMgmtFilter, in that order):

* an SSO bearer token, or HTTP Basic with an engine user's name and password
  (``curl -u admin@internal:secret``);
* a REST session: a request that authenticates with ``Prefer: persistent-auth`` gets a
  ``JSESSIONID`` cookie (and a ``JSESSIONID`` header, as the engine adds one), and later
  requests carrying that cookie need no credentials, as long as they also send
  ``Prefer: persistent-auth``: a request without it (or with ``Prefer: new-auth``) ends the
  session first, as the engine's session validation filter does. ``Session-TTL`` (minutes)
  sets the session's idle lifetime; the engine's default is 180 minutes.

Wrong or missing credentials get 401 with ``WWW-Authenticate: Basic realm="RESTAPI"`` (the
scheme the engine's web.xml gives EnforceAuthFilter). The body is not an API fault: the
filter calls ``sendError(401, message)`` before the API runs, so the client gets the servlet
container's (Undertow's) HTML error page, whose text is the SSO error when credentials were
given and wrong, "Unauthorized" when none were.
"""

from __future__ import annotations

import base64
import binascii
import html
import secrets
import time
from collections.abc import Container, Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

#: The challenge the engine's REST API answers a 401 with.
CHALLENGE = 'Basic realm="RESTAPI"'
#: What the SSO service answers a wrong user name or password with (``error_code: error``).
BAD_CREDENTIALS = "access_denied: Cannot authenticate user: wrong user name or password."
COOKIE = "JSESSIONID"
API_PATH = "/ovirt-engine/api"
SESSION_MINUTES = 180  # the restapi web.xml's session-timeout


def valid_user(users: Mapping[str, str], user: str, password: str) -> bool:
    """The check of the SSO token endpoint and of Basic authentication alike."""
    return bool(user) and user in users and users[user] == password


def check_header(header: str, tokens: Container[str], users: Mapping[str, str]) -> str | None:
    """None when an ``Authorization`` header lets its caller in, else why not (the text
    of the engine's error page; "" when there were no credentials)."""
    scheme, _, credentials = header.partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    if scheme == "bearer":
        return None if credentials in tokens else "invalid_grant: The token is not valid."
    if scheme == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return BAD_CREDENTIALS
        user, sep, password = decoded.partition(":")
        return None if sep and valid_user(users, user, password) else BAD_CREDENTIALS
    return ""


def authorized(header: str, tokens: Container[str], users: Mapping[str, str]) -> bool:
    """Whether an ``Authorization`` header lets its caller in."""
    return check_header(header, tokens, users) is None


def prefer(request: Request) -> set[str]:
    """The ``Prefer`` header's elements, lower case (``persistent-auth``, ``new-auth``)."""
    found: set[str] = set()
    for value in request.headers.getlist("prefer"):
        for element in value.split(","):
            name = element.split(";")[0].split("=")[0].strip().lower()
            if name:
                found.add(name)
    return found


def unauthorized(message: str) -> Response:
    """Undertow's error page for ``sendError(401, message)``, with the engine's challenge."""
    text = html.escape(message or "Unauthorized")
    body = f"<html><head><title>Error</title></head><body>{text}</body></html>"
    return Response(
        body,
        status_code=401,
        media_type="text/html;charset=UTF-8",
        headers={"WWW-Authenticate": CHALLENGE},
    )


@dataclass
class _Session:
    idle_limit: float
    last_used: float


class Sessions:
    """The REST API's HTTP sessions (``JSESSIONID``)."""

    def __init__(self) -> None:
        self._live: dict[str, _Session] = {}
        self.created = 0

    def __len__(self) -> int:
        return len(self._live)

    def _valid(self, session_id: str | None) -> bool:
        session = self._live.get(session_id or "")
        if session is None or session_id is None:
            return False
        if time.monotonic() - session.last_used > session.idle_limit:
            del self._live[session_id]
            return False
        session.last_used = time.monotonic()
        return True

    def admit(
        self, request: Request, tokens: Container[str], users: Mapping[str, str]
    ) -> tuple[Response | None, dict[str, str]]:
        """(a 401 to answer instead, or None) and the headers a successful answer gets."""
        wants = prefer(request)
        persistent = "persistent-auth" in wants
        session_id = request.cookies.get(COOKIE)
        if "new-auth" in wants or not persistent:  # RestApiSessionValidationFilter
            self._live.pop(session_id or "", None)
        if persistent and self._valid(session_id):
            assert session_id is not None
            return None, {COOKIE: session_id}
        problem = check_header(request.headers.get("authorization", ""), tokens, users)
        if problem is not None:
            return unauthorized(problem), {}
        if not persistent:
            return None, {}
        ttl = request.headers.get("session-ttl", "")
        minutes = int(ttl) if ttl.isdigit() and int(ttl) >= 1 else SESSION_MINUTES
        session_id = secrets.token_urlsafe(24)
        self._live[session_id] = _Session(minutes * 60.0, time.monotonic())
        self.created += 1
        return None, {
            COOKIE: session_id,
            "Set-Cookie": f"{COOKIE}={session_id}; path={API_PATH}; HttpOnly",
        }
