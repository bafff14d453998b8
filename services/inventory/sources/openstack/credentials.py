"""The OpenStack keys of a provider Secret, and the checks that need no connection.

The keys are Forklift's (its openstack-populator and Hoist's populator read the same):
``username``/``userID`` with ``password``; ``applicationCredentialID`` (or
``applicationCredentialName`` with the user) with ``applicationCredentialSecret``; or a ready
``token``. Scope: ``projectName``/``projectID`` and ``domainName``
(``userDomainName``/``projectDomainName`` override it); ``regionName`` picks the catalog
region. The parsing is re-implemented here rather than imported from the populator: services
do not import each other (a shared/ home for it is proposed in the report that added this).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from shared.tls import normalize_fingerprint

PASSWORD, APP_CREDENTIAL, TOKEN = "password", "application_credential", "token"
_TRUTHY = ("true", "1", "yes")
_FALSY = ("", "false", "0", "no")


@dataclass(frozen=True)
class OpenStackCredentials:
    username: str = ""
    user_id: str = ""
    password: str = ""
    app_cred_id: str = ""
    app_cred_name: str = ""
    app_cred_secret: str = ""
    token: str = ""
    project_name: str = ""
    project_id: str = ""
    user_domain: str = "Default"
    project_domain: str = "Default"
    region: str = ""

    @classmethod
    def from_secret(cls, secret: Mapping[str, str]) -> OpenStackCredentials:
        def get(key: str) -> str:
            return (secret.get(key) or "").strip()

        domain = get("domainName") or "Default"
        return cls(
            username=get("username"),
            user_id=get("userID"),
            password=secret.get("password") or "",
            app_cred_id=get("applicationCredentialID"),
            app_cred_name=get("applicationCredentialName"),
            app_cred_secret=secret.get("applicationCredentialSecret") or "",
            token=get("token"),
            project_name=get("projectName"),
            project_id=get("projectID"),
            user_domain=get("userDomainName") or domain,
            project_domain=get("projectDomainName") or domain,
            region=get("regionName"),
        )

    def methods(self) -> list[str]:
        """Every auth method the keys make usable (exactly one is valid)."""
        found = []
        if self.password and (self.username or self.user_id):
            found.append(PASSWORD)
        if self.app_cred_secret and (self.app_cred_id or self.app_cred_name):
            found.append(APP_CREDENTIAL)
        if self.token:
            found.append(TOKEN)
        return found

    @property
    def method(self) -> str:
        found = self.methods()
        if len(found) != 1:
            raise ValueError(f"the Secret holds {len(found)} usable auth methods, not one")
        return found[0]

    def who(self) -> str:
        return self.app_cred_id or self.app_cred_name or self.username or self.user_id or "token"

    def auth(self, auth_url: str) -> dict[str, Any]:
        """The arguments of keystoneauth's v3 plugin for ``method``."""
        method = self.method
        args: dict[str, Any] = {"auth_url": auth_url}
        if method == APP_CREDENTIAL:
            # An application credential carries its own project scope.
            args["application_credential_secret"] = self.app_cred_secret
            if self.app_cred_id:
                args["application_credential_id"] = self.app_cred_id
            else:
                args["application_credential_name"] = self.app_cred_name
                args.update(self._user())
            return args
        if method == PASSWORD:
            args.update(self._user(), password=self.password)
        else:
            args["token"] = self.token
        if self.project_id:
            args["project_id"] = self.project_id
        elif self.project_name:
            args["project_name"] = self.project_name
            args["project_domain_name"] = self.project_domain
        return args

    def _user(self) -> dict[str, str]:
        if self.user_id:
            return {"user_id": self.user_id}
        return {"username": self.username, "user_domain_name": self.user_domain}


def keystone_v3_url(url: str) -> str:
    """The Keystone v3 URL a user's URL names (``.../v3`` appended when absent)."""
    base = url.rstrip("/")
    return base if re.search(r"/v3(\.\d+)?$", base) else f"{base}/v3"


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
    insecure = (secret.get("insecureSkipVerify") or "").strip().lower()
    if insecure not in _TRUTHY + _FALSY:
        problems.append(("credentials.insecureSkipVerify", "use `true` or `false`"))
    return problems
