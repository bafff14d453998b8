"""An oVirt provider's definition checked before any connection: the URL must be the
engine's API, the user carries its profile, the TLS keys parse. (Connecting itself is
``shared.sources.ovirt_connect``, which the orchestrator uses too.)"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from shared.populator.trust import (
    INSECURE_SKIP_VERIFY,
    FlagError,
    normalize_fingerprint,
    parse_flag,
)
from shared.sources.ovirt_connect import API_PATH


def check_definition(url: str, secret: Mapping[str, str]) -> list[tuple[str, str]]:
    """Every problem of a definition at once, before connecting."""
    problems: list[tuple[str, str]] = []
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        problems.append(("url", f"the URL must start with https:// (or http://), not {url!r}"))
    elif not parts.hostname:
        problems.append(("url", f"the URL {url!r} names no host"))
    else:
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            problems.append(("url", f"the URL {url!r} has an invalid port"))
        if parts.path.rstrip("/") != API_PATH:
            problems.append(
                (
                    "url",
                    f"the URL must be the engine's API, https://<engine>{API_PATH}; "
                    f"its path is {parts.path or '/'!r}",
                )
            )
        if parts.query or parts.fragment:
            problems.append(("url", "the URL must not carry a query or fragment"))
    user = (secret.get("user") or "").strip()
    if not user:
        problems.append(("credentials.user", "the user is required, e.g. admin@internal"))
    elif "@" not in user:
        problems.append(
            ("credentials.user", f"the user {user!r} lacks its profile, e.g. {user}@internal")
        )
    if not secret.get("password"):
        problems.append(("credentials.password", "the password is required"))
    if secret.get("fingerprint"):
        try:
            normalize_fingerprint(secret["fingerprint"])
        except ValueError as exc:
            problems.append(("credentials.fingerprint", str(exc)))
    try:
        parse_flag(secret.get(INSECURE_SKIP_VERIFY))
    except FlagError as exc:
        problems.append((f"credentials.{exc.field}", exc.reason))
    return problems
