"""The OpenStack keys of a provider Secret, and the checks that need no connection.

The keys are Forklift's (its openstack-populator and Hoist's populator read the same):
``username``/``userID`` with ``password``; ``applicationCredentialID`` (or
``applicationCredentialName`` with the user) with ``applicationCredentialSecret``; or a ready
``token``. Scope: ``projectName``/``projectID`` and ``domainName``
(``userDomainName``/``projectDomainName`` override it); ``regionName`` picks the catalog
region. The parsing itself is shared with the populator (``shared.openstack_auth``); what is
here are the checks the inventory makes before connecting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from cryptography import x509

from shared.openstack_auth import PASSWORD, TOKEN, OpenStackCredentials
from shared.populator.trust import (
    INSECURE_SKIP_VERIFY,
    FlagError,
    normalize_fingerprint,
    parse_flag,
)

__all__ = ["OpenStackCredentials", "check_secret", "check_url"]


def check_url(url: str) -> list[tuple[str, str]]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [("url", "give Keystone's v3 URL as http(s)://host[:port][/v3]")]
    try:
        _ = parts.port
    except ValueError:
        return [("url", f"{url!r} has an invalid port")]
    if parts.query or parts.fragment:
        return [("url", "Keystone's URL takes no query or fragment")]
    if re.search(r"/v2(\.0)?/?$", parts.path):
        return [("url", "Keystone v2.0 is not supported: give the v3 URL (…/v3)")]
    return []


def check_secret(secret: Mapping[str, str]) -> list[tuple[str, str]]:
    """Missing, half-given or contradictory keys, all at once."""
    c = OpenStackCredentials.from_secret(secret)
    problems: list[tuple[str, str]] = []
    has_user = bool(c.username or c.user_id)
    if c.username and c.user_id:
        problems.append(("credentials.userID", "give `username` or `userID`, not both"))
    if c.password and not has_user:
        problems.append(("credentials.username", "`password` needs `username` or `userID`"))
    if has_user and not c.password and not c.app_cred_name and not c.token:
        problems.append(("credentials.password", f"`password` is missing for {c.who()}"))
    if (c.app_cred_id or c.app_cred_name) and not c.app_cred_secret:
        problems.append(
            (
                "credentials.applicationCredentialSecret",
                "the application credential's secret is missing",
            )
        )
    if c.app_cred_secret and not (c.app_cred_id or c.app_cred_name):
        problems.append(
            (
                "credentials.applicationCredentialID",
                "`applicationCredentialSecret` needs `applicationCredentialID` "
                "(or `applicationCredentialName` with the user)",
            )
        )
    if c.app_cred_name and not c.app_cred_id and not has_user:
        problems.append(
            (
                "credentials.username",
                "`applicationCredentialName` needs the credential's owner: `username` or `userID`",
            )
        )
    methods = c.methods()
    if not methods and not problems:
        problems.append(
            (
                "credentials",
                "no OpenStack credentials: give `username` and `password`, "
                "`applicationCredentialID` and `applicationCredentialSecret`, or `token`",
            )
        )
    if len(methods) > 1:
        problems.append(
            ("credentials", f"give one way to authenticate, not {' and '.join(methods)}")
        )
    if methods in ([PASSWORD], [TOKEN]) and not (c.project_name or c.project_id):
        problems.append(
            (
                "credentials.projectName",
                "a project scope is needed: give `projectName` (with `domainName`) or `projectID`",
            )
        )
    if c.project_name and c.project_id:
        problems.append(("credentials.projectID", "give `projectName` or `projectID`, not both"))
    return problems + check_tls_keys(secret)


def check_tls_keys(secret: Mapping[str, str]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if raw := (secret.get("fingerprint") or "").strip():
        try:
            normalize_fingerprint(raw)
        except ValueError as exc:
            problems.append(("credentials.fingerprint", str(exc)))
    if pem := (secret.get("cacert") or "").strip():
        try:
            x509.load_pem_x509_certificates(pem.encode())
        except ValueError:
            problems.append(("credentials.cacert", "not a PEM bundle of certificates"))
    try:
        parse_flag(secret.get(INSECURE_SKIP_VERIFY))
    except FlagError as exc:
        problems.append((f"credentials.{exc.field}", exc.reason))
    return problems
