"""Reading a disk from ovirt-imageio: OPTIONS, extents, and range reads into our buffers.

One ``ImageioSource`` per transfer URL; each reader thread holds its own keep-alive
connection (``Reader``) and reads ranges straight into its page-aligned buffer
(``HttpConnection.readinto_exactly``: no intermediate bytes objects, so memory stays flat
whatever the disk size). Errors are sorted by what they mean for the copy:

* ``TicketGone`` (403): the ticket expired or was cancelled; nothing more can be read.
* ``Transient``: connection reset, timeouts, 5xx: reconnect and read the range again.
* ``TlsError``: the server is not the one we trust; never retried.

``retrying`` is the one retry loop (``ATTEMPTS``, backoff 0.1 s doubling to 5 s): the
copy's range reads and the small requests (OPTIONS, extents) all go through it, so a
reset on any of them costs a retry in place, not the whole attempt.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from services.populators.common.failure import PopulatorFailure
from services.populators.common.http import HttpConnection
from services.populators.common.tls import TlsError, TlsPolicy

log = logging.getLogger("populator")

TIMEOUT = 60.0
ATTEMPTS = 8  # per request; backoff 0.1 s doubling to 5 s

T = TypeVar("T")


class TicketGone(PopulatorFailure):
    """imageio answered 403: the transfer ticket expired or was cancelled."""


class NoDirtyExtents(PopulatorFailure):
    """imageio answered 404 to ``extents?context=dirty``: the ticket is not part of an
    incremental backup (or its export has no single dirty bitmap). The orchestrator copies
    a full stage instead."""


class ChecksumUnavailable(PopulatorFailure):
    """imageio answered 404 or 405 to the checksum API: this daemon (or a proxy before it)
    has none."""


class Transient(Exception):
    """Worth reading the same range again on a fresh connection."""


def retrying(
    call: Callable[[], T],
    what: str,
    doing: str,
    stopped: Callable[[], bool] | None = None,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """``call()``, again on ``Transient`` (it closed its connection: the next try opens a
    fresh one) up to ``ATTEMPTS`` times with backoff; then a ``PopulatorFailure`` saying
    ``"<doing> failed N times"``. Anything else (403, TLS refusal, unreachable) passes
    through at once. ``stopped()`` true ends the retries (another reader failed)."""
    delay = 0.1
    for attempt in range(1, ATTEMPTS + 1):
        if attempt > 1 and stopped is not None and stopped():
            raise PopulatorFailure("stopped: another reader failed")
        try:
            return call()
        except Transient as exc:
            if attempt == ATTEMPTS:
                raise PopulatorFailure(f"{doing} failed {ATTEMPTS} times, last: {exc}") from exc
            if on_retry is not None:
                on_retry()
            log.info("retrying %s after: %s (attempt %d)", what, exc, attempt)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")  # the loop returns or raises


@dataclass(frozen=True)
class Extent:
    start: int
    length: int
    zero: bool


@dataclass(frozen=True)
class DirtyExtent:
    """An item of ``extents?context=dirty``: ``dirty`` says it changed since the backup's
    checkpoint, ``zero`` that it now reads as zeros (so it is zeroed, never read)."""

    start: int
    length: int
    dirty: bool
    zero: bool


class ImageioSource:
    def __init__(self, url: str, tls: TlsPolicy) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise PopulatorFailure(f"transfer URL {url!r} is not an http(s) URL")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.path = parts.path
        self.tls = tls if parts.scheme == "https" else None

    def reader(self, timeout: float = TIMEOUT) -> Reader:
        return Reader(self, timeout)

    def _json(self, method: str, path: str, missing: str = "", timeout: float = TIMEOUT) -> Any:
        """The answer's JSON; with ``missing``, a 404 is ``NoDirtyExtents(missing)``."""

        def once() -> tuple[int, bytes]:
            reader = self.reader(timeout)
            try:
                status, body = reader.simple(method, path)
            finally:
                reader.close()
            if status >= 500:
                raise Transient(f"HTTP {status} to {method} {path}")
            if status in (404, 405) and "/checksum" in path:
                detail = body[:200].decode(errors="replace").strip().replace("\n", " ")
                raise ChecksumUnavailable(f"HTTP {status} to {method} {path}: {detail}")
            return status, body

        status, body = retrying(
            once, f"{method} {path}", f"{method} {path} at {self.host}:{self.port}"
        )
        if status == 403:
            raise TicketGone(
                f"imageio refused the ticket at {self.url} (403: "
                f"{body[:200].decode(errors='replace').strip()}): it expired or was cancelled"
            )
        if status == 404 and missing:
            detail = body[:200].decode(errors="replace").strip().replace("\n", " ")
            raise NoDirtyExtents(f"{missing} (404: {detail})")
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

    def checksum_algorithms(self) -> list[str]:
        """What the checksum API computes (``ChecksumUnavailable`` when there is none)."""
        raw = self._json("GET", f"{self.path}/checksum/algorithms")
        return [str(a) for a in raw.get("algorithms") or []]

    def checksum(self, algorithm: str, block_size: int, timeout: float) -> str:
        """imageio's block checksum of the whole image (it reads the image itself: the
        answer comes when it has hashed everything, hence ``timeout``)."""
        query = urllib.parse.urlencode({"algorithm": algorithm, "block_size": block_size})
        raw = self._json("GET", f"{self.path}/checksum?{query}", timeout=timeout)
        if raw.get("algorithm") != algorithm or int(raw.get("block_size", 0)) != block_size:
            raise PopulatorFailure(
                f"imageio computed a {raw.get('algorithm')} checksum over "
                f"{raw.get('block_size')}-byte blocks, not the {algorithm} over "
                f"{block_size}-byte blocks asked for"
            )
        return str(raw["checksum"]).lower()

    def dirty_extents(self) -> list[DirtyExtent]:
        """What changed since the backup's checkpoint (``context=dirty``); the list covers
        the whole disk, changed or not."""
        raw = self._json(
            "GET",
            f"{self.path}/extents?context=dirty",
            missing=f"imageio at {self.host}:{self.port} cannot serve dirty extents for this "
            "transfer (not an incremental backup of the disk); copy a full stage instead",
        )
        return [
            DirtyExtent(int(e["start"]), int(e["length"]), bool(e["dirty"]), bool(e["zero"]))
            for e in raw
        ]


class Reader:
    """One keep-alive connection; ``read_into`` fills a buffer with one range."""

    def __init__(self, source: ImageioSource, timeout: float = TIMEOUT) -> None:
        self.source = source
        self._conn = HttpConnection(source.host, source.port, source.tls, timeout)

    def close(self) -> None:
        self._conn.close()

    def simple(self, method: str, path: str) -> tuple[int, bytes]:
        """One small request (OPTIONS, extents) and its whole answer. Not connecting at all
        means imageio is unreachable there (the caller may try another URL); a connection
        reset, or one lost after it was made, is ``Transient`` like a range read's."""
        if not self._conn.connected:
            try:
                self._conn.connect()
            except TlsError:
                raise
            except (ConnectionResetError, ConnectionAbortedError) as exc:
                self.close()
                raise Transient(f"{type(exc).__name__}: {exc}") from exc
            except OSError as exc:
                self.close()
                raise PopulatorFailure(
                    f"imageio at {self.source.host}:{self.source.port} unreachable "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
        try:
            response = self._conn.request(method, path)
            return response.status, self._conn.read()
        except TlsError:
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise Transient(f"{type(exc).__name__}: {exc}") from exc

    def read_into(self, offset: int, view: memoryview) -> None:
        """Fill ``view`` with the image's bytes from ``offset``."""
        self.ask(offset, len(view))
        self.receive_into(offset, view)

    def ask(self, offset: int, length: int) -> None:
        """Request a range now; its bytes come with a later ``receive_into`` (after the
        ranges asked before it). imageio serves a connection's requests in order, so asking
        for the next range before writing this one keeps the daemon busy meanwhile."""
        try:
            self._conn.send_request(
                "GET", self.source.path, {"Range": f"bytes={offset}-{offset + length - 1}"}
            )
        except TlsError:
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise Transient(f"{type(exc).__name__}: {exc}") from exc

    def receive_into(self, offset: int, view: memoryview) -> None:
        """The answer to the oldest range asked: its bytes into ``view``."""
        end = offset + len(view) - 1
        try:
            response = self._conn.read_response()
            if response.status != 206:
                body = self._conn.read()
                text = body[:300].decode(errors="replace").strip()
                if response.status == 403:
                    raise TicketGone(
                        f"imageio refused the ticket at byte {offset} (403: {text}): it "
                        "expired or was cancelled"
                    )
                if response.status >= 500:
                    raise Transient(f"HTTP {response.status} for bytes {offset}-{end}")
                raise PopulatorFailure(
                    f"imageio answered HTTP {response.status} for bytes {offset}-{end}: {text}"
                )
            self._conn.readinto_exactly(view)
        except (TicketGone, Transient, TlsError, PopulatorFailure):
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise Transient(f"{type(exc).__name__}: {exc}") from exc
