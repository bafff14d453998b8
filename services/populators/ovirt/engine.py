"""The few engine API calls a populator makes: SSO login/logout and the image transfer.

Our own small HTTP client (``common.http``) with XML, not ovirtsdk4: the populator needs
five calls, asyncio callers run them in a thread, and our TLS policy (pinned fingerprints)
must apply to the engine exactly as to imageio. All calls share one keep-alive connection;
a dropped connection is reopened once.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

from services.populators.common.failure import PopulatorFailure
from services.populators.common.http import HttpConnection
from services.populators.common.tls import TlsError, TlsPolicy

TIMEOUT = 60.0
_QUOTE = {'"': "&quot;"}


class DiskLocked(PopulatorFailure):
    """The engine says the disk is locked (another transfer, a snapshot): try again later."""


@dataclass(frozen=True)
class TransferState:
    id: str
    phase: str
    transfer_url: str | None
    proxy_url: str | None


def _parse_transfer(body: bytes) -> TransferState:
    el = ET.fromstring(body)  # noqa: S314 (the engine we verified by TLS)
    return TransferState(
        id=el.get("id", ""),
        phase=el.findtext("phase", "unknown"),
        transfer_url=el.findtext("transfer_url") or None,
        proxy_url=el.findtext("proxy_url") or None,
    )


def _fault_detail(body: bytes) -> str:
    try:
        el = ET.fromstring(body)  # noqa: S314
    except ET.ParseError:
        return body[:300].decode(errors="replace").strip()
    return (el.findtext("detail") or el.findtext("reason") or "").strip("[] ")


class EngineClient:
    def __init__(self, engine_url: str, user: str, password: str, tls: TlsPolicy) -> None:
        url = urllib.parse.urlsplit(engine_url.rstrip("/"))
        if url.scheme != "https" or not url.hostname:
            raise ValueError(f"--engine-url {engine_url!r}: expected https://<engine>[...]")
        self.host = url.hostname
        self.port = url.port or 443
        self.user = user
        self._password = password
        self._tls = tls
        self._conn = HttpConnection(self.host, self.port, tls, TIMEOUT)
        self._token: str | None = None

    def _request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        for attempt in (1, 2):
            try:
                response = self._conn.request(method, path, headers, body)
                return response.status, self._conn.read()
            except TlsError:
                raise
            except OSError as exc:
                self._conn.close()
                if attempt == 2:
                    raise PopulatorFailure(
                        f"engine {self.host}:{self.port} unreachable ({type(exc).__name__}: "
                        f"{exc}) for {method} {path}"
                    ) from exc
        raise AssertionError("unreachable")

    def login(self) -> None:
        form = urllib.parse.urlencode(
            {
                "grant_type": "password",
                "scope": "ovirt-app-api",
                "username": self.user,
                "password": self._password,
            }
        ).encode()
        status, body = self._request(
            "POST",
            "/ovirt-engine/sso/oauth/token",
            form,
            {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        )
        try:
            answer = json.loads(body)
        except ValueError:
            answer = {}
        if status != 200 or "access_token" not in answer:
            why = answer.get("error_description") or answer.get("error") or f"HTTP {status}"
            raise PopulatorFailure(
                f"engine refused the credentials of user {self.user}: {why}; "
                "check the provider Secret"
            )
        self._token = str(answer["access_token"])

    def logout(self) -> None:
        if self._token is None:
            return
        form = urllib.parse.urlencode({"scope": "ovirt-app-api", "token": self._token}).encode()
        self._request(
            "POST",
            "/ovirt-engine/services/sso-logout",
            form,
            {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        )
        self._token = None

    def _api(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Version": "4",
            "Accept": "application/xml",
            "Content-Type": "application/xml",
        }
        return self._request(method, f"/ovirt-engine/api{path}", body, headers)

    def create_transfer(
        self, disk_id: str, inactivity_timeout: int, backup_id: str | None = None
    ) -> TransferState:
        """A download of the disk; with ``backup_id``, of the disk as that backup holds it
        (its ticket serves dirty extents when the disk's backup mode is incremental).
        ``raw`` is asked either way: it selects imageio's NBD backend, the one that serves
        extents at all."""
        backup = f'<backup id="{escape(backup_id, _QUOTE)}"/>' if backup_id else ""
        body = (
            f'<image_transfer><disk id="{escape(disk_id, _QUOTE)}"/>{backup}'
            "<direction>download</direction>"
            f"<format>raw</format><inactivity_timeout>{inactivity_timeout}</inactivity_timeout>"
            "</image_transfer>"
        ).encode()
        status, answer = self._api("POST", "/imagetransfers", body)
        if status in (200, 201, 202):
            return _parse_transfer(answer)
        detail = _fault_detail(answer)
        if status == 409 and "locked" in detail.lower():
            raise DiskLocked(detail)
        raise PopulatorFailure(
            f"engine refused to start a transfer of disk {disk_id} (HTTP {status}): {detail}"
        )

    def get_transfer(self, transfer_id: str) -> TransferState | None:
        """The transfer, or None once the engine has forgotten it (after it finished)."""
        status, answer = self._api("GET", f"/imagetransfers/{transfer_id}")
        if status == 404:
            return None
        if status != 200:
            raise PopulatorFailure(
                f"engine answered HTTP {status} for transfer {transfer_id}: {_fault_detail(answer)}"
            )
        return _parse_transfer(answer)

    def action(self, transfer_id: str, name: str) -> None:
        status, answer = self._api("POST", f"/imagetransfers/{transfer_id}/{name}", b"<action/>")
        if status not in (200, 201, 202):
            raise PopulatorFailure(
                f"engine refused to {name} transfer {transfer_id} (HTTP {status}): "
                f"{_fault_detail(answer)}"
            )

    def close(self) -> None:
        self._conn.close()
