"""Glance v2: an image's metadata, waiting for it to be ``active``, and its bytes from any offset.

Failures are sorted the way they should be handled: a 401 gets a new token
(``Session.reauthenticate``) and the same request again; 5xx, 429, resets and timeouts are
retried with backoff (``ATTEMPTS`` per request); everything else (404, 403, a TLS refusal,
an image that is ``killed``) fails at once with a line that says what to do.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from services.populators.common.failure import PopulatorFailure
from services.populators.common.http import HttpConnection, Response
from services.populators.common.tls import TlsError
from services.populators.openstack.identity import Session, target_of

log = logging.getLogger("populator")

ATTEMPTS = 8
REAUTHS = 3
# Resets, timeouts, TLS errors, malformed answers (ProtocolError): all OSError. TlsError
# (a certificate we do not trust) is one too, and is always re-raised before this.
TRANSIENT = (OSError,)
DEAD = {"killed", "deleted", "pending_delete", "deactivated"}


def backoff(attempt: int) -> float:
    return float(min(0.2 * 2**attempt, 5.0))


class Glance:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.retries = 0
        self.reauths = 0
        self._data: HttpConnection | None = None

    def _url(self, path: str) -> str:
        return f"{self.session.image_url}/v2/{path}"

    def _unauthorized(self, what: str) -> None:
        self.reauths += 1
        if self.reauths > REAUTHS:
            raise PopulatorFailure(f"Glance kept refusing new tokens ({what}): giving up")
        self.session.reauthenticate()

    def image(self, image_id: str) -> dict[str, Any]:
        url = self._url(f"images/{image_id}")
        for attempt in range(ATTEMPTS):
            try:
                headers = {"X-Auth-Token": self.session.token, "Accept": "application/json"}
                status, _, body = self.session.client.request("GET", url, headers)
            except TlsError:
                raise
            except TRANSIENT as exc:
                self._transient(f"GET {url}", exc, attempt)
                continue
            if status == 200:
                meta: dict[str, Any] = json.loads(body)
                return meta
            if status == 401:
                self._unauthorized(f"GET {url}")
            elif status == 404:
                raise PopulatorFailure(
                    f"image {image_id} not found in Glance ({url}): deleted, or not visible to "
                    "the Secret's project"
                )
            elif status >= 500 or status == 429:
                self._transient(f"GET {url}", f"HTTP {status}", attempt)
            else:
                raise PopulatorFailure(f"GET {url} answered HTTP {status}: {body[:300]!r}")
        raise PopulatorFailure(f"GET {url} failed {ATTEMPTS} times: giving up")

    def wait_active(self, image_id: str, wait_seconds: float, poll: float = 1.0) -> dict[str, Any]:
        """The image once ``active``; fails on a dead image or one still not done in time."""
        deadline = time.monotonic() + wait_seconds
        while True:
            meta = self.image(image_id)
            status = meta.get("status")
            if status == "active":
                return meta
            if status in DEAD:
                raise PopulatorFailure(
                    f"image {image_id} is {status} in Glance: its upload failed or it was "
                    "removed; create the image again (the migration retries the disk)"
                )
            if time.monotonic() + poll > deadline:
                raise PopulatorFailure(
                    f"image {image_id} is still {status} after {wait_seconds:.0f} s: the upload "
                    "into Glance (Nova's snapshot or Cinder's upload-to-image) is stuck; the pod "
                    "fails and the migration retries it"
                )
            log.info("image %s is %s: waiting for it to become active", image_id, status)
            time.sleep(poll)

    def _transient(self, what: str, why: object, attempt: int) -> None:
        self.retries += 1
        if attempt + 1 >= ATTEMPTS:
            raise PopulatorFailure(f"{what} failed {ATTEMPTS} times, last: {why}")
        delay = backoff(attempt)
        log.info("%s: %s; retrying in %.1f s", what, why, delay)
        time.sleep(delay)

    def open_data(self, image_id: str, offset: int, size: int) -> Download:
        """``GET /file`` from ``offset`` on a connection of its own; the download says where
        its body starts (0 when the server ignored ``Range``: the caller skips what it has)."""
        url = self._url(f"images/{image_id}/file")
        for attempt in range(ATTEMPTS):
            if self._data is not None:
                self._data.close()
            try:
                self._data = conn = self.session.client.open(url)
                headers = {"X-Auth-Token": self.session.token}
                if offset:
                    headers["Range"] = f"bytes={offset}-{size - 1}"
                resp = conn.request("GET", target_of(url), headers)
                if resp.status in (200, 206):
                    start = _range_start(resp) if resp.status == 206 else 0
                    if start != offset and resp.status == 206:
                        raise PopulatorFailure(
                            f"Glance answered Range {offset}- with {resp.headers['content-range']}"
                        )
                    return Download(conn, resp, start)
                body = conn.read()
            except TlsError:
                raise
            except TRANSIENT as exc:
                self._transient(f"GET {url}", exc, attempt)
                continue
            if resp.status == 401:
                self._unauthorized(f"GET {url}")
            elif resp.status == 204:
                raise PopulatorFailure(
                    f"image {image_id} has no data (HTTP 204): a boot-from-volume server's "
                    "snapshot holds only volume snapshots; upload the volume instead"
                )
            elif resp.status >= 500 or resp.status == 429:
                self._transient(f"GET {url}", f"HTTP {resp.status}", attempt)
            else:
                raise PopulatorFailure(f"GET {url} answered HTTP {resp.status}: {body[:300]!r}")
        raise PopulatorFailure(f"GET {url} failed {ATTEMPTS} times: giving up")

    def close(self) -> None:
        if self._data is not None:
            self._data.close()


@dataclass
class Download:
    """An image download in flight: its connection, the response, where its body starts."""

    conn: HttpConnection
    response: Response
    start: int

    def close(self) -> None:
        self.conn.close()


def _range_start(resp: Response) -> int:
    value = resp.headers.get("content-range", "")  # bytes START-END/SIZE
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        raise PopulatorFailure(f"Glance sent 206 with a bad Content-Range {value!r}") from None
