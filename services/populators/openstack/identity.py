"""Keystone v3: the credentials a populator pod gets, a token, and Glance's URL from the catalog.

The pod's env carries the keys of the Secret the user gave for the provider, under
Forklift's names (its openstack-populator reads the same): ``username``/``userID`` with
``password``, or ``applicationCredentialID`` (or ``applicationCredentialName`` with the user)
with ``applicationCredentialSecret``, or a ready ``token``; the scope from ``projectName``
/``projectID`` and ``domainName`` (``userDomainName``/``projectDomainName`` override it);
``regionName`` picks the catalog region; ``cacert`` (PEM) and ``insecureSkipVerify`` drive
TLS verification, which is on by default.

A token can die mid-copy (expired, revoked): ``Session.reauthenticate()`` gets a new one
from the same credentials, except when all we were given is a token; then the failure says
so, since nothing can renew it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from services.populators.common.args import Credentials, UsageError, insecure_flag
from services.populators.common.failure import PopulatorFailure
from services.populators.common.http import HttpConnection
from services.populators.common.tls import TlsError, TlsPolicy
from shared import openstack_auth as shared_auth

log = logging.getLogger("populator")
TIMEOUT = 60.0


@dataclass(frozen=True)
class OpenStackCredentials(shared_auth.OpenStackCredentials):
    """The Secret's keys as the pod's env carries them, plus how to verify TLS."""

    ca_pem: str | None = None
    insecure: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OpenStackCredentials:
        env = os.environ if env is None else env
        creds = cls(
            **cls.fields_of(env),
            ca_pem=env.get("cacert", "").strip() or None,
            insecure=insecure_flag(env),
        )
        if creds.method is None:
            raise UsageError(
                "no OpenStack credentials in the env: give `username` and `password`, "
                "`applicationCredentialID` and `applicationCredentialSecret`, or `token`"
            )
        return creds

    def tls(self) -> TlsPolicy:
        """Verify with ``cacert`` (else the system store); skip only on insecureSkipVerify."""
        return TlsPolicy(Credentials("", "", self.ca_pem, None, self.insecure))

    def describe(self) -> str:
        how = (
            "skipped (insecureSkipVerify)"
            if self.insecure
            else ("CA bundle from the Secret" if self.ca_pem else "system CA store")
        )
        who = self.app_cred_id or self.username or self.user_id or "(token)"
        return f"{self.method} auth as {who}, TLS verification: {how}"


class HttpClient:
    """Keep-alive HTTP(S) connections per host (the common client: TLS from memory)."""

    def __init__(self, tls: TlsPolicy) -> None:
        self.tls = tls
        self._conns: dict[tuple[str, str, int], HttpConnection] = {}

    def open(self, url: str) -> HttpConnection:
        """A new connection of its own (the data stream's), not shared with others."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise PopulatorFailure(f"{url}: only http and https URLs are supported")
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        return HttpConnection(parts.hostname or "", port, self.tls if https else None, TIMEOUT)

    def connection(self, url: str, *, fresh: bool = False) -> HttpConnection:
        """The shared keep-alive connection to ``url``'s host (a new one with ``fresh``)."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.hostname or "", parts.port or 0)
        conn = self._conns.get(key)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = self._conns[key] = self.open(url)
        return conn

    def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        """One small request (JSON). A keep-alive connection the server closed meanwhile
        (gunicorn drops idle ones after seconds) fails in many ways; any of them gets one
        more try on a new connection."""
        target = target_of(url)
        for attempt in (0, 1):
            conn = self.connection(url, fresh=attempt == 1)
            try:
                resp = conn.request(method, target, headers, body)
                return resp.status, resp.headers, conn.read()
            except TlsError:
                raise
            except OSError:
                conn.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


def target_of(url: str) -> str:
    """The request target (path and query) of a URL."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


class Session:
    """A Keystone token and the image endpoint; renewable from the same credentials."""

    def __init__(self, endpoint: str, creds: OpenStackCredentials, client: HttpClient) -> None:
        base = endpoint.rstrip("/")
        self.auth_url = base if base.endswith("/v3") else f"{base}/v3"
        self.creds = creds
        self.client = client
        self.token = ""
        self.image_url = ""

    def authenticate(self) -> None:
        body = json.dumps(self.creds.auth_body()).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        status, hdrs, data = self.client.request(
            "POST", f"{self.auth_url}/auth/tokens", headers, body
        )
        if status in (401, 403):
            extra = " (the token may have expired)" if self.creds.method == "token" else ""
            raise PopulatorFailure(
                f"Keystone at {self.auth_url} refused the {self.creds.method} credentials "
                f"(HTTP {status}){extra}: fix the provider's Secret and run the migration again"
            )
        if status != 201:
            raise PopulatorFailure(
                f"Keystone at {self.auth_url} answered HTTP {status} to the token request: "
                f"{data[:300]!r}"
            )
        self.token = hdrs["x-subject-token"]
        self.image_url = self._image_endpoint(json.loads(data)["token"].get("catalog", []))
        log.info("authenticated at %s; image service %s", self.auth_url, self.image_url)

    def reauthenticate(self) -> None:
        """After a 401: a new token, unless a bare token is all we have."""
        if self.creds.method == "token":
            raise PopulatorFailure(
                "Glance refused the token (expired or revoked) and the Secret holds no password "
                "or application credential to get a new one: give a fresh token or credentials"
            )
        log.info("token refused (expired or revoked): authenticating again")
        self.authenticate()

    def _image_endpoint(self, catalog: list[dict[str, Any]]) -> str:
        region = self.creds.region
        for service in catalog:
            if service.get("type") != "image":
                continue
            for ep in service.get("endpoints", []):
                if ep.get("interface") == "public" and (
                    not region or region in (ep.get("region"), ep.get("region_id"))
                ):
                    return str(ep["url"]).rstrip("/").removesuffix("/v2")
        where = f" in region {region}" if region else ""
        raise PopulatorFailure(
            f"Keystone's catalog has no public image (Glance) endpoint{where}: check "
            "`regionName` in the Secret and the cloud's service catalog"
        )
