"""OpenStack credentials as a provider Secret holds them, under Forklift's key names.

Read alike by the inventory (which tests and uses them through openstacksdk) and by the
OpenStack populator pod (which gets the copied Secret as env and talks to Keystone itself):
``username``/``userID`` with ``password``; ``applicationCredentialID`` (or
``applicationCredentialName`` with the user) with ``applicationCredentialSecret``; or a
ready ``token``. Scope: ``projectName``/``projectID`` and ``domainName``
(``userDomainName``/``projectDomainName`` override it); ``regionName`` picks the catalog
region.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PASSWORD, APP_CREDENTIAL, TOKEN = "password", "application_credential", "token"


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

    @staticmethod
    def fields_of(secret: Mapping[str, str]) -> dict[str, str]:
        """The constructor's arguments from a Secret's (or an env's) keys."""

        def get(key: str) -> str:
            return (secret.get(key) or "").strip()

        domain = get("domainName") or "Default"
        return {
            "username": get("username"),
            "user_id": get("userID"),
            "password": secret.get("password") or "",
            "app_cred_id": get("applicationCredentialID"),
            "app_cred_name": get("applicationCredentialName"),
            "app_cred_secret": secret.get("applicationCredentialSecret") or "",
            "token": get("token"),
            "project_name": get("projectName"),
            "project_id": get("projectID"),
            "user_domain": get("userDomainName") or domain,
            "project_domain": get("projectDomainName") or domain,
            "region": get("regionName"),
        }

    @classmethod
    def from_secret(cls, secret: Mapping[str, str]) -> OpenStackCredentials:
        return cls(**cls.fields_of(secret))

    def methods(self) -> list[str]:
        """Every auth method the keys make usable (a valid Secret has exactly one)."""
        found = []
        if self.app_cred_secret and (self.app_cred_id or self.app_cred_name):
            found.append(APP_CREDENTIAL)
        if self.password and (self.username or self.user_id):
            found.append(PASSWORD)
        if self.token:
            found.append(TOKEN)
        return found

    @property
    def method(self) -> str | None:
        """The method used: the first usable one (application credential, password, token)."""
        found = self.methods()
        return found[0] if found else None

    def who(self) -> str:
        return self.app_cred_id or self.app_cred_name or self.username or self.user_id or "token"

    def keystoneauth_args(self, auth_url: str) -> dict[str, Any]:
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
                args.update(self._ksa_user())
            return args
        if method == PASSWORD:
            args.update(self._ksa_user(), password=self.password)
        else:
            args["token"] = self.token
        if self.project_id:
            args["project_id"] = self.project_id
        elif self.project_name:
            args["project_name"] = self.project_name
            args["project_domain_name"] = self.project_domain
        return args

    def auth_body(self) -> dict[str, Any]:
        """The body of Keystone's ``POST /v3/auth/tokens`` for ``method``."""
        if self.method == APP_CREDENTIAL:
            cred: dict[str, Any] = {"secret": self.app_cred_secret}
            if self.app_cred_id:
                cred["id"] = self.app_cred_id
            else:
                cred["name"] = self.app_cred_name
                cred["user"] = self._body_user()
            return {
                "auth": {
                    "identity": {
                        "methods": [APP_CREDENTIAL],
                        "application_credential": cred,
                    }
                }
            }
        identity: dict[str, Any]
        if self.method == PASSWORD:
            user = {**self._body_user(), "password": self.password}
            identity = {"methods": [PASSWORD], "password": {"user": user}}
        else:
            identity = {"methods": [TOKEN], "token": {"id": self.token}}
        body: dict[str, Any] = {"auth": {"identity": identity}}
        if self.project_id:
            body["auth"]["scope"] = {"project": {"id": self.project_id}}
        elif self.project_name:
            body["auth"]["scope"] = {
                "project": {"name": self.project_name, "domain": {"name": self.project_domain}}
            }
        return body

    def _ksa_user(self) -> dict[str, str]:
        if self.user_id:
            return {"user_id": self.user_id}
        return {"username": self.username, "user_domain_name": self.user_domain}

    def _body_user(self) -> dict[str, Any]:
        if self.user_id:
            return {"id": self.user_id}
        return {"name": self.username, "domain": {"name": self.user_domain}}
