"""``OpenStackSource``: a provider's cloud through openstacksdk, loaded then refreshed.

Refresh, every interval:

- servers with Nova's ``changes-since``: changed ones, and deleted ones (status
  ``DELETED``: their keys go to ``deleted``);
- images with Glance's ``updated_at=gt:<ts>`` (a deleted image is noticed by the
  collector's periodic full load: Glance lists no deleted images);
- flavors relisted (Nova has no ``changes-since`` for flavors; they are few), volumes,
  snapshots, volume types, networks, subnets and projects relisted and compared: those kinds
  are ``complete``. Ports are relisted too (they are not a kind, but part of each VM);
- a VM is re-emitted when one of its volumes or ports changed, though Nova did not.

Clock skew: the markers are the cloud's own times (the ``Date`` of the listing response,
or a newer ``updated`` seen), never this host's clock, moved back by ``OVERLAP`` for skew
between the cloud's API and database nodes and Nova's whole-second timestamps; what is sent
again unchanged hashes alike and the store drops it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from services.inventory.items import Batch, Concern, Item
from services.inventory.sources.contract import Source, check_tls
from services.inventory.sources.openstack import collecting, concerns
from services.inventory.sources.openstack import normalizing as norm
from services.inventory.sources.openstack.credentials import (
    OpenStackCredentials,
    check_secret,
    check_url,
)
from shared.payloads import ProviderType
from shared.sources import openstack_connect
from shared.tls import TrustOptions

OVERLAP = dt.timedelta(seconds=5)
ALWAYS_RELISTED = ("project", "flavor", "volumetype", "volume", "snapshot", "network", "subnet")
ALL_KINDS = (*ALWAYS_RELISTED, "image", "vm")


def _ts(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _marker(
    rows: list[dict[str, Any]], field: str, server_time: dt.datetime | None,
    previous: dt.datetime | None,
) -> dt.datetime | None:  # fmt: skip
    """The newest of: the service's clock when the listing began (its ``Date``), the
    newest ``updated`` among the rows (a database clock ahead of the API's), the previous
    marker. Without the ``Date``, a quiet cloud would be re-sent the last window forever."""
    seen = [t for r in rows if (t := _ts(r.get(field))) is not None]
    candidates = [t for t in (*seen, server_time, previous) if t is not None]
    return max(candidates) if candidates else None


def _since(t: dt.datetime | None) -> str | None:
    if t is None:
        return None
    return (t - OVERLAP).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest(row: Mapping[str, Any]) -> str:
    body = json.dumps(row, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


class OpenStackSource(Source):
    type: ClassVar[ProviderType] = ProviderType.OPENSTACK

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lister: collecting.Lister | None = None
        self._servers: dict[str, dict[str, Any]] = {}  # raw, as last seen
        self._images: dict[str, dict[str, Any]] = {}
        self._flavors: dict[str, dict[str, Any]] = {}
        self._volume_sums: dict[str, str] = {}
        self._port_sums: dict[str, str] = {}  # per server
        self._server_mark: dt.datetime | None = None
        self._image_mark: dt.datetime | None = None

    # ---------------------------------------------------------------- definition, probe

    @classmethod
    def check_definition(cls, url: str, secret: Mapping[str, str]) -> list[tuple[str, str]]:
        return check_url(url) + check_secret(secret)

    async def probe(self) -> dict[str, Any]:
        timeout = self.context.settings.connect_timeout_seconds
        trust = TrustOptions.from_secret(self.secret)
        cert = await check_tls(self.provider.url, trust, timeout)
        await self.close()
        connected = await self.context.calls(
            openstack_connect.connect,
            self.provider.url,
            dict(self.secret),
            trust,
            timeout,
            self.context.settings.call_timeout_seconds,
            "hoist-inventory",
        )
        region = OpenStackCredentials.from_secret(self.secret).region
        admin = "admin" in connected.facts.get("roles", [])
        lister = collecting.Lister(connected, region, all_projects=admin)
        try:
            # One cheap read per service: a role without read access shows up now.
            await asyncio.gather(
                self.context.calls(lister.servers, "2999-01-01T00:00:00Z"),
                self.context.calls(lister.volume_types),
                self.context.calls(lister.images, "2999-01-01T00:00:00Z"),
                self.context.calls(lister.subnets),
            )
        except BaseException:
            lister.close()
            raise
        self._lister = lister
        facts = dict(connected.facts)
        facts["computeMicroversion"] = lister.compute_microversion
        facts["allProjects"] = admin
        if cert is not None:
            facts["certificate"] = {"sha256Fingerprint": cert.sha256, "subject": cert.subject}
        return facts

    async def close(self) -> None:
        if self._lister is not None:
            lister, self._lister = self._lister, None
            await asyncio.to_thread(lister.close)

    async def _ensure(self) -> collecting.Lister:
        if self._lister is None:
            await self.probe()
        assert self._lister is not None
        return self._lister

    async def _call(self, fn: Callable[..., collecting.Listed], *args: Any) -> collecting.Listed:
        return await self.context.calls(fn, *args)

    # ---------------------------------------------------------------- load, refresh

    async def load(self) -> Batch:
        lister = await self._ensure()
        (projects, flavors, images, vtypes, volumes, snapshots, networks, subnets, ports,
         servers) = await asyncio.gather(
            self._call(lister.projects), self._call(lister.flavors), self._call(lister.images),
            self._call(lister.volume_types), self._call(lister.volumes),
            self._call(lister.snapshots), self._call(lister.networks),
            self._call(lister.subnets), self._call(lister.ports), self._call(lister.servers),
        )  # fmt: skip
        self._servers = {s["id"]: s for s in servers.rows}
        self._images = {i["id"]: i for i in images.rows}
        self._flavors = {f["id"]: f for f in flavors.rows}
        self._server_mark = _marker(servers.rows, "updated", servers.server_time, None)
        self._image_mark = _marker(images.rows, "updated_at", images.server_time, None)
        batch = Batch(complete=frozenset(ALL_KINDS))
        batch.extend(norm.image(i) for i in images.rows)
        self._relisted(batch, projects, flavors, vtypes, volumes, snapshots, networks, subnets)
        idx = self._indexes(volumes, ports, networks)
        self._volume_sums = {v["id"]: _digest(v) for v in volumes.rows}
        self._port_sums = self._ports_by_server(idx)
        batch.extend(norm.vm(s, idx) for s in servers.rows)
        return batch

    async def refresh(self) -> Batch:
        lister = await self._ensure()
        (projects, flavors, images, vtypes, volumes, snapshots, networks, subnets, ports,
         servers) = await asyncio.gather(
            self._call(lister.projects), self._call(lister.flavors),
            self._call(lister.images, _since(self._image_mark)),
            self._call(lister.volume_types), self._call(lister.volumes),
            self._call(lister.snapshots), self._call(lister.networks),
            self._call(lister.subnets), self._call(lister.ports),
            self._call(lister.servers, _since(self._server_mark)),
        )  # fmt: skip
        batch = Batch(complete=frozenset(ALWAYS_RELISTED))
        self._server_mark = _marker(servers.rows, "updated", servers.server_time, self._server_mark)
        self._image_mark = _marker(images.rows, "updated_at", images.server_time, self._image_mark)
        for i in images.rows:
            self._images[i["id"]] = i
            batch.items.append(norm.image(i))
        self._flavors = {f["id"]: f for f in flavors.rows}
        self._relisted(batch, projects, flavors, vtypes, volumes, snapshots, networks, subnets)
        idx = self._indexes(volumes, ports, networks)

        touched: set[str] = set()
        for s in servers.rows:
            if s.get("status") == "DELETED":
                self._servers.pop(s["id"], None)
                batch.deleted.append(("vm", s["id"]))
            else:
                self._servers[s["id"]] = s
                touched.add(s["id"])
        touched |= self._volume_changes(volumes.rows)
        port_sums = self._ports_by_server(idx)
        touched |= {sid for sid in port_sums.keys() | self._port_sums.keys()
                    if port_sums.get(sid) != self._port_sums.get(sid)}  # fmt: skip
        self._port_sums = port_sums
        batch.extend(norm.vm(self._servers[sid], idx) for sid in touched if sid in self._servers)
        return batch

    def assess(self, vm: Item) -> list[Concern]:
        return concerns.assess(vm.data)

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def _relisted(batch: Batch, *listed: collecting.Listed) -> None:
        projects, flavors, vtypes, volumes, snapshots, networks, subnets = listed
        batch.extend(norm.project(p) for p in projects.rows if p.get("id"))
        batch.extend(norm.flavor(f) for f in flavors.rows)
        batch.extend(norm.volume_type(t) for t in vtypes.rows)
        batch.extend(norm.volume(v) for v in volumes.rows)
        batch.extend(norm.snapshot(s) for s in snapshots.rows)
        batch.extend(norm.network(n) for n in networks.rows)
        batch.extend(norm.subnet(s) for s in subnets.rows)

    def _indexes(
        self, volumes: collecting.Listed, ports: collecting.Listed, networks: collecting.Listed
    ) -> norm.Indexes:
        return norm.Indexes.build(
            volumes.rows, ports.rows, networks.rows, self._images.values(), self._flavors.values()
        )

    def _volume_changes(self, volumes: list[dict[str, Any]]) -> set[str]:
        """Servers a changed, new or vanished volume was or is attached to."""
        sums = {v["id"]: _digest(v) for v in volumes}
        changed = {vid for vid in sums.keys() | self._volume_sums.keys()
                   if sums.get(vid) != self._volume_sums.get(vid)}  # fmt: skip
        self._volume_sums = sums
        if not changed:
            return set()
        by_id = {v["id"]: v for v in volumes}
        servers = {a.get("server_id") for vid in changed
                   for a in (by_id.get(vid) or {}).get("attachments") or []}  # fmt: skip
        for sid, raw in self._servers.items():
            ids = {v.get("id") for v in raw.get("os-extended-volumes:volumes_attached") or []}
            if ids & changed:
                servers.add(sid)
        return {s for s in servers if s}

    @staticmethod
    def _ports_by_server(idx: norm.Indexes) -> dict[str, str]:
        return {sid: _digest({"p": ports}) for sid, ports in idx.ports_by_device.items()}
