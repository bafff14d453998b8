"""Several replicas split the populator pods between them: membership in NATS KV, rendezvous
hashing over the live members.

Membership: each replica puts its entry in the KV bucket ``<prefix>-progress-replicas``
every ``HOIST_PROGRESS_HEARTBEAT_SECONDS`` and reads everyone's. A member is alive while its
entry's revision keeps changing: a replica that has not seen a new revision of an entry for
``replica_ttl`` (default one scrape interval) counts it dead. Time is measured on the
reader's own monotonic clock, so replicas' clocks need not agree (only a member first seen
is aged by the wall-clock time in its entry, so a long-dead entry is not taken for alive).
A replica that stops cleanly deletes its entry, and the others take over at their next
heartbeat. The bucket's own TTL (three times ``replica_ttl``) removes entries of dead
replicas for good.

Assignment: a VM's disks belong to the live member with the highest hash of (member, VM id)
(rendezvous hashing). All disks of a VM land on one replica, which can then publish VM
progress from what it holds; a member leaving moves only its own VMs, spread evenly over the
others, and a member joining takes about 1/n of everyone's.

Take-over bound: a replica dies right after its heartbeat; the others count it dead
``replica_ttl`` later, notice at their next heartbeat (≤ ``heartbeat_seconds``), and scrape
the VMs they gain within a quarter interval (see ``scheduling``): with the defaults 5 + 1 +
1.25 s, within two scrape intervals (10 s).

Without NATS, a replica cannot see the others, keeps its last view for ``replica_ttl``, then
scrapes everything alone: duplicated work, never a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable

from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from shared.bus import Bus
from shared.settings import ProgressSettings

log = logging.getLogger("hoist.progress.sharding")


def replica_name() -> str:
    """Unique per process: the pod's host name (readable) plus a random suffix."""
    host = "".join(c if c.isalnum() or c == "-" else "-" for c in socket.gethostname())[:40]
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}".lower()


def score(member: str, key: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{member}\0{key}".encode(), digest_size=8).digest())


def owner(members: Iterable[str], key: str) -> str:
    """The rendezvous (highest random weight) owner of ``key``."""
    return max(members, key=lambda m: score(m, key))


class Membership:
    def __init__(self, bus: Bus, settings: ProgressSettings, me: str | None = None) -> None:
        self.bus = bus
        self.settings = settings
        self.me = me or replica_name()
        self.ttl = settings.replica_ttl_seconds or settings.scrape_seconds
        self.bucket = f"{bus.prefix}-progress-replicas"
        self.members: tuple[str, ...] = (self.me,)
        self.version = 0  # bumped on every change of ``members``
        self.changed = asyncio.Event()
        self._kv: KeyValue | None = None
        self._seen: dict[str, tuple[int, float]] = {}
        self._last_ok = time.monotonic()

    def owns(self, key: str) -> bool:
        return owner(self.members, key) == self.me

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self.bus.js.key_value(self.bucket)
            except BucketNotFoundError:
                self._kv = await self.bus.js.create_key_value(
                    bucket=self.bucket,
                    description="Live replicas of the progress service (heartbeats).",
                    history=1,
                    ttl=self.ttl * 3,
                )
        return self._kv

    async def beat(self) -> None:
        """Renew our entry and refresh the view of the others (one heartbeat)."""
        kv = await self._bucket()
        await kv.put(self.me, json.dumps({"at": time.time()}).encode())
        try:
            keys = await kv.keys()
        except NoKeysError:
            keys = []
        now, wall = time.monotonic(), time.time()
        alive = {self.me}
        for key in keys:
            if key == self.me:
                continue
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                continue
            seen = self._seen.get(key)
            if seen is None:
                try:
                    age = max(0.0, wall - float(json.loads(entry.value or b"{}")["at"]))
                except (ValueError, KeyError, TypeError):
                    age = 0.0
                self._seen[key] = (entry.revision or 0, now - age)
            elif seen[0] != entry.revision:
                self._seen[key] = (entry.revision or 0, now)
            if now - self._seen[key][1] < self.ttl:
                alive.add(key)
        for key in set(self._seen) - set(keys):
            del self._seen[key]
        self._last_ok = now
        self._set(alive)

    def _set(self, alive: set[str]) -> None:
        members = tuple(sorted(alive))
        if members != self.members:
            gone, new = set(self.members) - alive, alive - set(self.members)
            log.info(
                "replicas: %d live (%s joined, %s gone)",
                len(members),
                ", ".join(sorted(new)) or "none",
                ", ".join(sorted(gone)) or "none",
            )
            self.members = members
            self.version += 1
            self.changed.set()

    async def run(self) -> None:
        delay = self.settings.heartbeat_seconds
        while True:
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._kv = None
                if time.monotonic() - self._last_ok > self.ttl and self.members != (self.me,):
                    log.warning(
                        "cannot reach the replica bucket (%s); scraping every pod alone "
                        "until it answers",
                        exc,
                    )
                    self._set({self.me})
                else:
                    log.debug("heartbeat failed: %s", exc)
            await asyncio.sleep(delay)

    async def leave(self) -> None:
        """Delete our entry so the others take over at their next heartbeat."""
        if self._kv is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._kv.delete(self.me), 2)
