"""Who may call the simulated engine's API: an SSO bearer token, or HTTP Basic with an
engine user's name and password (``admin@internal:secret``), as the real engine accepts.

Wrong or missing credentials get 401 with the engine's ``WWW-Authenticate`` challenge.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Container, Mapping

#: The challenge the engine's REST API answers a 401 with.
CHALLENGE = 'Basic realm="RESTAPI"'


def valid_user(users: Mapping[str, str], user: str, password: str) -> bool:
    """The check of the SSO token endpoint and of Basic authentication alike."""
    return bool(user) and user in users and users[user] == password


def authorized(header: str, tokens: Container[str], users: Mapping[str, str]) -> bool:
    """Whether an ``Authorization`` header lets its caller in."""
    scheme, _, credentials = header.partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    if scheme == "bearer":
        return credentials in tokens
    if scheme == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        return bool(sep) and valid_user(users, user, password)
    return False
