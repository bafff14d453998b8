"""Reading a disk from ovirt-imageio: OPTIONS, extents, and range reads into our buffers.

One ``ImageioSource`` per transfer URL; each reader thread holds its own keep-alive
connection (``Reader``) and reads ranges straight into its page-aligned buffer
(``HTTPResponse.readinto``: no intermediate bytes objects, so memory stays flat whatever
the disk size). Errors are sorted by what they mean for the copy:

* ``TicketGone`` (403): the ticket expired or was cancelled; nothing more can be read.
* ``Transient``: connection reset, timeouts, 5xx: reconnect and read the range again.
* ``TlsError``: the server is not the one we trust; never retried.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from services.populators.common.failure import PopulatorFailure
from services.populators.common.tls import TlsError, TlsPolicy

TIMEOUT = 60.0


class TicketGone(PopulatorFailure):
    """imageio answered 403: the transfer ticket expired or was cancelled."""


class Transient(Exception):
    """Worth reading the same range again on a fresh connection."""


@dataclass(frozen=True)
class Extent:
    start: int
    length: int
    zero: bool


class ImageioSource:
    def __init__(self, url: str, tls: TlsPolicy) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise PopulatorFailure(f"transfer URL {url!r} is not an https URL")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or 443
        self.path = parts.path
        self.tls = tls

    def reader(self) -> Reader:
        return Reader(self)

    def _json(self, method: str, path: str) -> Any:
        reader = self.reader()
        try:
            status, body = reader.simple(method, path)
        finally:
            reader.close()
        if status == 403:
            raise TicketGone(f"imageio refused the ticket ({body[:200]!r}) at {self.url}")
        if status != 200:
            raise PopulatorFailure(
                f"imageio answered HTTP {status} to {method} {path}: "
                f"{body[:300].decode(errors='replace').strip()}"
            )
        return json.loads(body)

    def options(self) -> dict[str, Any]:
        answer: dict[str, Any] = self._json("OPTIONS", self.path)
        return answer

    def extents(self) -> list[Extent]:
        """The disk's extents (``context=zero``): data to read and zeros to skip."""
        raw = self._json("GET", f"{self.path}/extents?context=zero")
        return [Extent(int(e["start"]), int(e["length"]), bool(e["zero"])) for e in raw]


class Reader:
    """One keep-alive connection; ``read_into`` fills a buffer with one range."""

    def __init__(self, source: ImageioSource) -> None:
        self.source = source
        self._conn: http.client.HTTPSConnection | None = None
        self.last_used = time.monotonic()

    def _connection(self) -> http.client.HTTPSConnection:
        if self._conn is None:
            self._conn = self.source.tls.connection(self.source.host, self.source.port, TIMEOUT)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def simple(self, method: str, path: str) -> tuple[int, bytes]:
        try:
            conn = self._connection()
            conn.request(method, path)
            response = conn.getresponse()
            return response.status, response.read()
        except TlsError:
            raise
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            self.close()
            raise PopulatorFailure(
                f"imageio at {self.source.host}:{self.source.port} unreachable "
                f"({type(exc).__name__}: {exc})"
            ) from exc

    def read_into(self, offset: int, view: memoryview) -> None:
        """Fill ``view`` with the image's bytes from ``offset``."""
        self.last_used = time.monotonic()
        end = offset + len(view) - 1
        try:
            conn = self._connection()
            conn.request("GET", self.source.path, headers={"Range": f"bytes={offset}-{end}"})
            response = conn.getresponse()
            if response.status != 206:
                body = response.read()
                if response.status == 403:
                    raise TicketGone(
                        f"imageio refused the ticket at byte {offset} (403: "
                        f"{body[:200].decode(errors='replace').strip()}): it expired or "
                        "was cancelled"
                    )
                if response.status >= 500:
                    raise Transient(f"HTTP {response.status} for bytes {offset}-{end}")
                raise PopulatorFailure(
                    f"imageio answered HTTP {response.status} for bytes {offset}-{end}: "
                    f"{body[:300].decode(errors='replace').strip()}"
                )
            got = 0
            while got < len(view):
                n = response.readinto(view[got:])
                if not n:
                    raise Transient(f"connection closed after {got} of {len(view)} bytes")
                got += n
        except (TicketGone, Transient, TlsError, PopulatorFailure):
            self.close()
            raise
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            self.close()
            raise Transient(f"{type(exc).__name__}: {exc}") from exc
        self.last_used = time.monotonic()
